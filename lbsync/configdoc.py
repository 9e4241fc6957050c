"""Reference docs and example files, generated from the schema declarations. Pure.

`scripts/gen-docs` writes what this returns into the README, docs/configuration.md and the
example files; a test fails when any of them differs from what the code declares, so the
docs cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
import textwrap
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from lbsync import schema

WIDTH = 96


def shown(value: Any) -> Any:
    """A default as the file would spell it."""
    if value is dataclasses.MISSING:
        return None
    if isinstance(value, Path | Enum):
        return str(value)
    if isinstance(value, tuple):
        if len(value) == 2 and all(isinstance(v, int) for v in value):
            return f"{value[0]}-{value[1]}"  # a LOW-HIGH range
        return [shown(v) for v in value]
    if hasattr(value, "spec"):  # a value with a one-line spelling of its own (a route)
        return str(value.spec)
    if dataclasses.is_dataclass(value):
        return None
    return value


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _default_cell(entry: schema.Entry) -> str:
    if entry.meta.required:
        return "required"
    if entry.is_section and entry.default is None:
        return ""
    value = shown(entry.default)
    return "unset" if value is None else f"`{_scalar(value)}`"


def _allowed(m: schema.Meta) -> str:
    parts = []
    if m.choices:
        parts.append(" \\| ".join(f"`{c}`" for c in m.choices))
    if m.low is not None or m.high is not None:
        low = "" if m.low is None else f"{m.low:g}"
        high = "" if m.high is None else f"{m.high:g}"
        parts.append(f"{low}..{high}")
    return ", ".join(parts)


def table(cls: type[Any]) -> str:
    """A markdown table of every key of a schema."""
    rows = ["| key | type | default | allowed | what it does |", "|---|---|---|---|---|"]
    for e in schema.entries(cls):
        help_text = e.meta.help.replace("|", "\\|")
        rows.append(f"| `{e.key}` | {e.kind} | {_default_cell(e)} | {_allowed(e.meta)} "
                    f"| {help_text} |")
    rules = _rules(cls)
    if rules:
        rows += ["", "Rules across keys:", ""] + [f"- `{key}`: {message}" for key, message in rules]
    return "\n".join(rows) + "\n"


def _rules(cls: type[Any], prefix: str = "") -> list[tuple[str, str]]:
    found = [(prefix + r.key if r.key else prefix.rstrip(".") or "(top level)",
              r.message.format(p=prefix)) for r in getattr(cls, "RULES", ())]
    for field, hint in schema.fields(cls):
        m = schema.meta(field)
        inner = m.items or (None if m.parse else schema.dataclass_of(hint))
        if inner is not None:
            sep = "[]." if schema.is_list(hint) else "."
            found += _rules(inner, prefix + field.name + sep)
    return found


def _comment(text: str, indent: str) -> list[str]:
    return [f"{indent}# {line}" for line in textwrap.wrap(text, WIDTH - len(indent) - 2,
                                                          break_on_hyphens=False)]


def example(cls: type[Any], title: str) -> str:
    """A complete example file: every key, its default (or example), and its help."""
    lines = [f"# {line}" for line in title.strip().splitlines()]
    lines += _example_body(cls, "")
    return "\n".join(lines) + "\n"


def _other_item_keys(item: type[Any] | None, shown_keys: dict[str, Any], indent: str
                     ) -> list[str]:
    """The keys of a list entry that its example leaves out, as comments."""
    out = []
    for field, _ in schema.fields(item) if item is not None else []:
        if field.name not in shown_keys:
            out.append(f"{indent}# {field.name}: ...  ({schema.meta(field).help})")
    return out


def _example_body(cls: type[Any], indent: str) -> list[str]:
    out: list[str] = []
    for field, hint in schema.fields(cls):
        m = schema.meta(field)
        inner = None if m.parse else schema.dataclass_of(hint)
        out.append("")
        out += _comment(m.help, indent)
        if inner is not None and not schema.is_list(hint):
            out.append(f"{indent}{field.name}:")
            out += [line for line in _example_body(inner, indent + "  ") if line]
            continue
        # A required key shows its example; any other shows its default, and its example
        # only as a comment: an example file may be installed as is.
        value = m.example if m.required else shown(schema.default_of(field))
        if m.example is not None and not m.required:
            out.append(f"{indent}# e.g. {field.name}: {_scalar(m.example)}")
        if isinstance(value, list) and value and isinstance(value[0], dict):
            dumped = yaml.safe_dump({field.name: value}, sort_keys=False, width=WIDTH)
            out += [indent + line for line in dumped.rstrip().splitlines()]
            out += _other_item_keys(schema.dataclass_of(hint), value[0], indent + "  ")
        else:
            out.append(f"{indent}{field.name}: {_scalar(value)}")
    return out


README_START = "<!-- generated by scripts/gen-docs from lbsync/config.py: do not edit -->"
README_END = "<!-- end of generated table -->"

DAEMON_TITLE = """\
lbsync configuration: /etc/lbsync/config.yaml (or -c FILE, or $LBSYNC_CONFIG).
Generated from lbsync/config.py by scripts/gen-docs; every key is shown with its default.
Every key is optional except `upstreams`. Unknown keys are errors (exit 2), so typos show.
Relative paths are relative to this file's directory."""

BOOTSTRAP_TITLE = """\
lbsync bootstrap configuration (`lbsync bootstrap --bootstrap-config FILE ...`).
Generated from lbsync/bootstrap/config.py by scripts/gen-docs; every key is shown with its
default. Flags override the file and obey the same rules."""


def reference() -> str:
    from lbsync.bootstrap.config import BootstrapConfig
    from lbsync.config import Config

    return (
        "# Configuration reference\n\n"
        "Generated from the schema declarations (`lbsync/config.py`, "
        "`lbsync/bootstrap/config.py`) by `scripts/gen-docs`; a test fails when this file "
        "differs from the code.\n\n"
        "## The daemon: `/etc/lbsync/config.yaml`\n\n"
        "Example with every key: [config/lbsync.example.yaml](../config/lbsync.example.yaml).\n\n"
        + table(Config)
        + "\n## The bootstrap: `--bootstrap-config FILE`\n\n"
        "Example with every key: "
        "[config/bootstrap.example.yaml](../config/bootstrap.example.yaml).\n\n"
        + table(BootstrapConfig)
    )


def outputs(readme: str) -> dict[str, str]:
    """Every generated file's text, keyed by its path in the repository. `readme` is the
    README's current text: only the part between the markers is generated."""
    from lbsync.bootstrap.config import BootstrapConfig
    from lbsync.config import Config

    head, start, rest = readme.partition(README_START)
    _, end, tail = rest.partition(README_END)
    if not (start and end):
        raise ValueError("README.md lacks the generated-table markers")
    return {
        "README.md": f"{head}{README_START}\n{table(Config)}{README_END}{tail}",
        "docs/configuration.md": reference(),
        "config/lbsync.example.yaml": example(Config, DAEMON_TITLE),
        "config/bootstrap.example.yaml": example(BootstrapConfig, BOOTSTRAP_TITLE),
    }
