"""The configuration file: its schema, defaults and validation, loaded into frozen dataclasses.

Every error names the key (e.g. `nginx.output`) so an operator can fix the file from one line.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from lbsync.errors import ConfigError

DEFAULT_PATH = Path("/etc/lbsync/config.yaml")
ENV_CONFIG = "LBSYNC_CONFIG"

UPSTREAM_NAME = re.compile(r"^[A-Za-z0-9_]+$")
# DNS-1123 label, as Kubernetes requires for namespaces and Service names.
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# The NGINX open source `server` parameters that make sense for a node: anything else
# (arbitrary text, `;`, `{`) could change the meaning of the file.
SERVER_OPTION = re.compile(
    r"^(weight=[1-9][0-9]{0,3}|max_conns=[0-9]{1,6}|max_fails=[0-9]{1,4}"
    r"|fail_timeout=[0-9]{1,6}(ms|s|m|h)?|backup)$"
)
T = TypeVar("T")

ADDRESS_TYPES = ("InternalIP", "ExternalIP")
LOG_FORMATS = ("json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class KubernetesConfig:
    kubeconfig: Path | None = None
    context: str | None = None


@dataclass(frozen=True)
class UpstreamConfig:
    """One NGINX upstream: either a Service's node port, or a fixed node port."""

    name: str
    namespace: str | None = None
    service: str | None = None
    port: int | str | None = None
    node_port: int | None = None

    @property
    def service_ref(self) -> str:
        return f"{self.namespace}/{self.service}"


@dataclass(frozen=True)
class NodesConfig:
    address_type: str = "InternalIP"
    label_selector: str = ""
    require_ready: bool = True
    min_nodes: int = 1
    allow_loopback: bool = False


@dataclass(frozen=True)
class NginxConfig:
    output: Path = Path("/etc/nginx/conf.d/lbsync-upstreams.conf")
    template: Path | None = None
    test_command: tuple[str, ...] = ("nginx", "-t")
    reload_command: tuple[str, ...] = ("nginx", "-s", "reload")
    server_options: str = "max_fails=3 fail_timeout=10s"
    command_timeout: float = 30.0


@dataclass(frozen=True)
class SyncConfig:
    debounce: float = 0.25
    max_delay: float = 2.0
    min_reload_interval: float = 0.5
    resync: float = 300.0
    watch_timeout: int = 300
    ready_after_failure: float = 60.0


@dataclass(frozen=True)
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = 9108

    @property
    def listen(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class LogConfig:
    format: str | None = None  # None: console on a TTY, JSON otherwise
    level: str = "info"


@dataclass(frozen=True)
class Config:
    upstreams: tuple[UpstreamConfig, ...]
    kubernetes: KubernetesConfig = KubernetesConfig()
    nodes: NodesConfig = NodesConfig()
    nginx: NginxConfig = NginxConfig()
    sync: SyncConfig = SyncConfig()
    http: HttpConfig = HttpConfig()
    log: LogConfig = LogConfig()
    source: Path | None = None


def config_path(cli_value: str | None) -> Path:
    """The config file to read: the -c flag, else $LBSYNC_CONFIG, else the default."""
    if cli_value:
        return Path(cli_value)
    env = os.environ.get(ENV_CONFIG)
    return Path(env) if env else DEFAULT_PATH


def load(path: Path, *, check_paths: bool = True) -> Config:
    """Read and validate the YAML file at `path`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path}: not found") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"config file {path}{where}: {problem}") from None
    return parse(raw, source=path, check_paths=check_paths)


def parse(raw: Any, *, source: Path | None = None, check_paths: bool = True) -> Config:
    """Validate an already-parsed YAML document; paths are relative to the file's directory."""
    if raw is None:
        raw = {}
    top = _mapping(raw, "(top level)")
    _reject_unknown(
        top, "", {"kubernetes", "upstreams", "nodes", "nginx", "sync", "http", "log"}
    )
    base = source.parent if source is not None else Path.cwd()
    cfg = Config(
        kubernetes=_kubernetes(top.get("kubernetes"), base),
        upstreams=_upstreams(top.get("upstreams")),
        nodes=_nodes(top.get("nodes")),
        nginx=_nginx(top.get("nginx"), base),
        sync=_sync(top.get("sync")),
        http=_http(top.get("http")),
        log=_log(top.get("log")),
        source=source,
    )
    if check_paths:
        check_filesystem(cfg)
    return cfg


def check_filesystem(cfg: Config) -> None:
    """Paths that must exist before lbsync can do anything useful."""
    kubeconfig = cfg.kubernetes.kubeconfig
    if kubeconfig is not None and not kubeconfig.is_file():
        raise ConfigError(f"kubernetes.kubeconfig: {kubeconfig}: no such file")
    out_dir = cfg.nginx.output.parent
    if not out_dir.is_dir():
        raise ConfigError(f"nginx.output: directory {out_dir} does not exist")
    template = cfg.nginx.template
    if template is not None and not template.is_file():
        raise ConfigError(f"nginx.template: {template}: no such file")


# --- sections ---------------------------------------------------------------------------


def _kubernetes(raw: Any, base: Path) -> KubernetesConfig:
    sec = _section(raw, "kubernetes", {"kubeconfig", "context"})
    return KubernetesConfig(
        kubeconfig=_opt(sec, "kubernetes.kubeconfig", lambda v, k: _path(v, k, base)),
        context=_opt(sec, "kubernetes.context", _string),
    )


def _upstreams(raw: Any) -> tuple[UpstreamConfig, ...]:
    if raw is None:
        raise ConfigError("upstreams: required, a list with at least one upstream")
    if not isinstance(raw, list) or not raw:
        raise ConfigError("upstreams: must be a non-empty list")
    result = tuple(_upstream(item, f"upstreams[{i}]") for i, item in enumerate(raw))
    seen: set[str] = set()
    for i, up in enumerate(result):
        if up.name in seen:
            raise ConfigError(f"upstreams[{i}].name: duplicate upstream name {up.name!r}")
        seen.add(up.name)
    return result


def _upstream(raw: Any, key: str) -> UpstreamConfig:
    sec = _section(raw, key, {"name", "service", "port", "node_port"})
    name = _required(sec, f"{key}.name", _string)
    if not UPSTREAM_NAME.match(name):
        raise ConfigError(f"{key}.name: {name!r} must match [A-Za-z0-9_]+")
    node_port = _opt(sec, f"{key}.node_port", lambda v, k: _int(v, k, 1, 65535))
    service = _opt(sec, f"{key}.service", _string)
    if node_port is not None:
        if service is not None or "port" in sec:
            raise ConfigError(f"{key}: give either node_port or service and port, not both")
        return UpstreamConfig(name=name, node_port=node_port)
    if service is None:
        raise ConfigError(f"{key}: needs service (namespace/name) and port, or node_port")
    namespace, _, svc_name = service.partition("/")
    if not (DNS_LABEL.match(namespace) and DNS_LABEL.match(svc_name)):
        raise ConfigError(f"{key}.service: {service!r} must be namespace/name")
    port = _required(sec, f"{key}.port", _service_port)
    return UpstreamConfig(name=name, namespace=namespace, service=svc_name, port=port)


def _nodes(raw: Any) -> NodesConfig:
    sec = _section(raw, "nodes", {"address_type", "label_selector", "require_ready", "min_nodes",
                                  "allow_loopback"})
    d = NodesConfig()
    address_type = _opt(sec, "nodes.address_type", _string) or d.address_type
    if address_type not in ADDRESS_TYPES:
        raise ConfigError(f"nodes.address_type: must be one of {', '.join(ADDRESS_TYPES)}")
    selector = _opt(sec, "nodes.label_selector", _string_or_empty)
    return NodesConfig(
        address_type=address_type,
        label_selector=selector if selector is not None else d.label_selector,
        require_ready=_opt_default(sec, "nodes.require_ready", _bool, d.require_ready),
        min_nodes=_opt_default(
            sec, "nodes.min_nodes", lambda v, k: _int(v, k, 1, 100000), d.min_nodes
        ),
        allow_loopback=_opt_default(sec, "nodes.allow_loopback", _bool, d.allow_loopback),
    )


def _nginx(raw: Any, base: Path) -> NginxConfig:
    keys = {"output", "template", "test_command", "reload_command", "server_options",
            "command_timeout"}
    sec = _section(raw, "nginx", keys)
    d = NginxConfig()
    options = _opt(sec, "nginx.server_options", _string_or_empty)
    if options is not None:
        for token in options.split():
            if not SERVER_OPTION.match(token):
                raise ConfigError(
                    f"nginx.server_options: {token!r} is not an allowed server parameter "
                    "(weight=, max_conns=, max_fails=, fail_timeout=, backup)"
                )
        options = " ".join(options.split())
    return NginxConfig(
        output=_opt(sec, "nginx.output", lambda v, k: _path(v, k, base)) or d.output,
        template=_opt(sec, "nginx.template", lambda v, k: _path(v, k, base)),
        test_command=_opt_default(sec, "nginx.test_command", _command, d.test_command),
        reload_command=_opt_default(sec, "nginx.reload_command", _command, d.reload_command),
        server_options=options if options is not None else d.server_options,
        command_timeout=_opt_default(
            sec, "nginx.command_timeout", lambda v, k: _float(v, k, 1, 600), d.command_timeout
        ),
    )


def _sync(raw: Any) -> SyncConfig:
    keys = {"debounce", "max_delay", "min_reload_interval", "resync", "watch_timeout",
            "ready_after_failure"}
    sec = _section(raw, "sync", keys)
    d = SyncConfig()
    cfg = SyncConfig(
        debounce=_opt_default(sec, "sync.debounce", lambda v, k: _float(v, k, 0, 60), d.debounce),
        max_delay=_opt_default(
            sec, "sync.max_delay", lambda v, k: _float(v, k, 0, 600), d.max_delay
        ),
        min_reload_interval=_opt_default(
            sec, "sync.min_reload_interval", lambda v, k: _float(v, k, 0, 600),
            d.min_reload_interval,
        ),
        resync=_opt_default(sec, "sync.resync", lambda v, k: _float(v, k, 1, 86400), d.resync),
        watch_timeout=_opt_default(
            sec, "sync.watch_timeout", lambda v, k: _int(v, k, 1, 3600), d.watch_timeout
        ),
        ready_after_failure=_opt_default(
            sec, "sync.ready_after_failure", lambda v, k: _float(v, k, 1, 86400),
            d.ready_after_failure,
        ),
    )
    if cfg.max_delay < cfg.debounce:
        raise ConfigError("sync.max_delay: must be at least sync.debounce")
    return cfg


def _http(raw: Any) -> HttpConfig:
    sec = _section(raw, "http", {"listen"})
    listen = _opt(sec, "http.listen", _string)
    if listen is None:
        return HttpConfig()
    match = re.match(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$", listen)
    if not match or not 0 <= int(match.group(2)) <= 65535:
        raise ConfigError(f"http.listen: {listen!r} must be HOST:PORT, e.g. 127.0.0.1:9108")
    return HttpConfig(host=match.group(1).strip("[]"), port=int(match.group(2)))


def _log(raw: Any) -> LogConfig:
    sec = _section(raw, "log", {"format", "level"})
    fmt = _opt(sec, "log.format", _string)
    if fmt is not None and fmt not in LOG_FORMATS:
        raise ConfigError(f"log.format: must be one of {', '.join(LOG_FORMATS)}")
    level = (_opt(sec, "log.level", _string) or "info").lower()
    if level not in LOG_LEVELS:
        raise ConfigError(f"log.level: must be one of {', '.join(LOG_LEVELS)}")
    return LogConfig(format=fmt, level=level)


# --- value checkers: each takes (value, key) and returns the checked value --------------


def _mapping(raw: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{key}: must be a mapping, got {_type_name(raw)}")
    return raw


def _section(raw: Any, key: str, allowed: set[str]) -> Mapping[str, Any]:
    if raw is None:
        return {}
    sec = _mapping(raw, key)
    _reject_unknown(sec, key + ".", allowed)
    return sec


def _reject_unknown(sec: Mapping[str, Any], prefix: str, allowed: set[str]) -> None:
    for name in sec:
        if name not in allowed:
            raise ConfigError(f"{prefix}{name}: unknown key")


def _opt(sec: Mapping[str, Any], key: str, check: Callable[[Any, str], T]) -> T | None:
    value = sec.get(key.rsplit(".", 1)[-1])
    return None if value is None else check(value, key)


def _opt_default(
    sec: Mapping[str, Any], key: str, check: Callable[[Any, str], T], default: T
) -> T:
    value = _opt(sec, key, check)
    return default if value is None else value


def _required(sec: Mapping[str, Any], key: str, check: Callable[[Any, str], T]) -> T:
    value = _opt(sec, key, check)
    if value is None:
        raise ConfigError(f"{key}: required")
    return value


def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


def _string(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}: must be a non-empty string, got {_type_name(value)}")
    return value.strip()


def _string_or_empty(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{key}: must be a string, got {_type_name(value)}")
    return value.strip()


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: must be true or false, got {_type_name(value)}")
    return value


def _int(value: Any, key: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key}: must be an integer, got {_type_name(value)}")
    if not low <= value <= high:
        raise ConfigError(f"{key}: {value} is out of range {low}..{high}")
    return value


def _float(value: Any, key: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{key}: must be a number, got {_type_name(value)}")
    if not low <= value <= high:
        raise ConfigError(f"{key}: {value} is out of range {low}..{high}")
    return float(value)


def _path(value: Any, key: str, base: Path) -> Path:
    text = _string(value, key)
    return (base / Path(text).expanduser()).resolve()


def _command(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            raise ConfigError(f"{key}: {exc}") from None
        if argv:
            return tuple(argv)
    raise ConfigError(f"{key}: must be a command line (string or list of strings)")


def _service_port(value: Any, key: str) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool):
        return _int(value, key, 1, 65535)
    if isinstance(value, str) and PORT_NAME.match(value):
        return value
    raise ConfigError(f"{key}: must be a port number or a port name, got {value!r}")
