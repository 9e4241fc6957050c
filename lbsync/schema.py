"""Configuration schemas declared once: each setting is a dataclass field that carries its type,
default, range or choices, and help, and one generic loader validates any such schema.

The daemon's file (`lbsync.config`) and the bootstrap's file (`lbsync.bootstrap.config`) are
both declared with `setting()`/`section()` and both loaded by `load()`, so a key's rules live
in exactly one place, and the reference docs and example files are generated from the same
declaration (`lbsync.configdoc`). Cross-field rules are declared too (`Rule`), not hidden in
code. Plain dataclasses and `typing`: this runs on Debian 12's Python 3.11 as on 3.13.

Every error names the key (`sync.max_delay: 0.1 is below sync.debounce`), exit 2.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from lbsync.errors import ConfigError

T = TypeVar("T")
KEY = "lbsync.schema"
# How a value is turned into the field's value when the plain type is not enough.
Parse = Callable[[Any, str], Any]


@dataclass(frozen=True)
class Meta:
    """What the schema knows about one setting, beyond its Python type."""

    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    pattern: str | None = None  # the whole value must match (fullmatch)
    parse: Parse | None = None  # for values that are not plain YAML scalars
    example: Any = None  # shown in docs and example files instead of the default
    required: bool = False
    kind: str = ""  # the type as docs show it, when the Python type says it badly
    min_items: int = 0  # for lists
    unique: tuple[str, str] | None = None  # for lists of sections: (field, what it names)
    items: type[Any] | None = None  # a parsed list's entries, declared for the docs


@dataclass(frozen=True)
class Rule:
    """A cross-field rule of a section: `holds(section)` must be true, else `key: message`.

    `key` is relative to the section ("" names the section itself); `{p}` in the message
    stands for the section's prefix, to name a sibling key.
    """

    key: str
    message: str
    holds: Callable[[Any], bool]


def setting(default: Any = dataclasses.MISSING, *, help: str, low: float | None = None,
            high: float | None = None, choices: Sequence[str] = (), pattern: str | None = None,
            parse: Parse | None = None, example: Any = None, kind: str = "",
            min_items: int = 0, unique: tuple[str, str] | None = None,
            items: type[Any] | None = None) -> Any:
    """Declare one setting. Without a default it is required."""
    meta = Meta(help, low, high, tuple(choices), pattern, parse, example,
                default is dataclasses.MISSING, kind, min_items, unique, items)
    return dataclasses.field(default=default, metadata={KEY: meta})


def section(cls: type[Any], *, help: str) -> Any:
    """Declare a nested section; absent from the file, it takes all its defaults."""
    return dataclasses.field(default_factory=cls, metadata={KEY: Meta(help)})


def meta(field: dataclasses.Field[Any]) -> Meta:
    found = field.metadata.get(KEY)
    if not isinstance(found, Meta):
        raise TypeError(f"{field.name}: not declared with schema.setting()/section()")
    return found


def fields(cls: type[Any]) -> list[tuple[dataclasses.Field[Any], Any]]:
    """The declared fields of a schema class with their resolved types."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls) if f.init]


# --- loading ---------------------------------------------------------------------------------


def load(cls: type[T], raw: Any, *, prefix: str = "", base: Path | None = None) -> T:
    """Validate a parsed YAML mapping against schema class `cls`; paths are relative to `base`.

    `prefix` is the key path of this section in the file, for messages ("" at the top).
    """
    where = prefix.rstrip(".") or "(top level)"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a mapping, got {type_name(raw)}")
    declared = fields(cls)
    names = [f.name for f, _ in declared]
    removed: dict[str, str] = getattr(cls, "REMOVED", {})
    for key in raw:
        if key in removed:
            raise ConfigError(f"{prefix}{key}: {removed[key]}")
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            raise ConfigError(f"{prefix}{key}: unknown key{hint}")
    values: dict[str, Any] = {}
    for field, hint in declared:
        key = prefix + field.name
        value = raw.get(field.name)
        if value is None:
            if meta(field).required:
                raise ConfigError(f"{key}: required")
            continue  # the dataclass default (YAML `key:` with no value means the default)
        values[field.name] = convert(hint, field, value, key, base)
    result = cls(**values)
    check_rules(result, prefix)
    return result


def check_rules(section_value: Any, prefix: str) -> None:
    for rule in getattr(type(section_value), "RULES", ()):
        if not rule.holds(section_value):
            key = prefix + rule.key if rule.key else prefix.rstrip(".") or "(top level)"
            raise ConfigError(f"{key}: {rule.message.format(p=prefix)}")


def convert(hint: Any, field: dataclasses.Field[Any], value: Any, key: str,
            base: Path | None) -> Any:
    m = meta(field)
    if m.min_items and (not isinstance(value, list) or len(value) < m.min_items):
        raise ConfigError(f"{key}: must be a non-empty list")
    value = m.parse(value, key) if m.parse is not None else _typed(hint, value, key, base)
    _bounds(m, value, key)
    if m.unique is not None:
        _unique(value, key, *m.unique)
    return value


def _unique(items: Sequence[Any], key: str, name: str, what: str) -> None:
    seen: set[Any] = set()
    for i, item in enumerate(items):
        value = getattr(item, name)
        if value in seen:
            raise ConfigError(f"{key}[{i}].{name}: duplicate {what} {value!r}")
        seen.add(value)


def _typed(hint: Any, value: Any, key: str, base: Path | None) -> Any:
    """The value as type `hint`, or a ConfigError naming the key and what was expected."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        # `X | None`: None never gets here (it means the default), so check as X.
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _typed(inner[0], value, key, base)
        raise TypeError(f"{key}: a union needs a parse function")
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: must be a list, got {type_name(value)}")
        return tuple(_typed(args[0], v, f"{key}[{i}]", base) for i, v in enumerate(value))
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return load(hint, value, prefix=key + ".", base=base)
    return _scalar(hint, value, key, base)


def _scalar(hint: Any, value: Any, key: str, base: Path | None) -> Any:
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: must be true or false, got {type_name(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: must be an integer, got {type_name(value)}")
        return value
    if hint is float:
        # YAML reads `300` as an int and `"300"` as a string: only the first is a number.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: must be a number, got {type_name(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            # `chart_version: 1.10` is the float 1.1 to YAML: refuse rather than guess.
            raise ConfigError(f"{key}: must be a string, got {type_name(value)} {value!r} "
                              "(quote it)")
        return value.strip()
    if hint is Path:
        text = _scalar(str, value, key, base)
        if not text:
            raise ConfigError(f"{key}: must be a path, got an empty string")
        path = Path(text).expanduser()
        # Joined, never resolved: what the operator wrote is what lbsync opens, and symlinks
        # are judged when the file is opened, not once at load.
        return path if path.is_absolute() or base is None else base / path
    raise TypeError(f"{key}: unsupported setting type {hint!r}")


def _bounds(m: Meta, value: Any, key: str) -> None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        low = float("-inf") if m.low is None else m.low
        high = float("inf") if m.high is None else m.high
        if not low <= value <= high:
            raise ConfigError(f"{key}: {value:g} is out of range {low:g}..{high:g}")
    if isinstance(value, str):
        if m.choices and value not in m.choices:
            raise ConfigError(f"{key}: must be one of {', '.join(m.choices)}, got {value!r}")
        if m.pattern is not None and not re.fullmatch(m.pattern, value):
            raise ConfigError(f"{key}: {value!r} must match {m.kind or m.pattern}")


def type_name(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
             int: "an integer", float: "a number", type(None): "nothing"}
    return names.get(type(value), type(value).__name__)


# --- parses shared by several schemas -------------------------------------------------------


def port_range(value: Any, key: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", value if isinstance(value, str) else "")
    if not m or not 1 <= int(m[1]) <= int(m[2]) <= 65535:
        raise ConfigError(f"{key}: {value!r}: expected 'LOW-HIGH', e.g. 30000-32767")
    return int(m[1]), int(m[2])



def replaced(obj: T, path: str, value: Any) -> T:
    """A copy of schema object `obj` with the setting at dotted `path` set to `value`."""
    head, _, rest = path.partition(".")
    new = replaced(getattr(obj, head), rest, value) if rest else value
    return dataclasses.replace(obj, **{head: new})  # type: ignore[type-var]


# --- introspection for docs ------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One documented key: its dotted path, and what the schema says of it."""

    key: str
    kind: str
    default: Any
    meta: Meta
    is_section: bool = False


def entries(cls: type[Any], prefix: str = "") -> list[Entry]:
    """Every key of a schema, depth first, in declaration order."""
    out: list[Entry] = []
    for field, hint in fields(cls):
        m, key = meta(field), prefix + field.name
        inner = m.items or (None if m.parse else dataclass_of(hint))
        default = default_of(field)
        if inner is not None and not is_list(hint):
            out.append(Entry(key, "section", None, m, True))
            out.extend(entries(inner, key + "."))
        elif inner is not None:
            out.append(Entry(key, m.kind or "list of mappings", default, m, True))
            out.extend(entries(inner, key + "[]."))
        else:
            out.append(Entry(key, m.kind or kind_of(hint), default, m))
    return out


def default_of(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def dataclass_of(hint: Any) -> type[Any] | None:
    for candidate in (hint, *typing.get_args(hint)):
        if dataclasses.is_dataclass(candidate) and isinstance(candidate, type):
            return candidate
    return None


def is_list(hint: Any) -> bool:
    return typing.get_origin(hint) is tuple


def kind_of(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        inner = [kind_of(a) for a in args if a is not type(None)]
        return " or ".join(inner) + (" or null" if type(None) in args else "")
    if origin is tuple:
        return f"list of {kind_of(args[0])}"
    return {bool: "boolean", int: "integer", float: "number", str: "string",
            Path: "path"}.get(hint, getattr(hint, "__name__", str(hint)))

