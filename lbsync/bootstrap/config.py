"""Bootstrap configuration: one file (or flags) names and pins everything the installer touches.

Owns the `BootstrapConfig` model, its defaults (the tutorial's values), parsing of the YAML file
and of `--route` specs, and validation. Pure: reading the file is the caller's job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

DEFAULT_GATEWAY_API_VERSION = "v1.0.0"
GATEWAY_API_URL = (
    "https://github.com/kubernetes-sigs/gateway-api/releases/download/{version}/standard-install.yaml"
)
# Pinned: chart versions float otherwise, and each chart bump can change KIC's major version.
DEFAULT_CHART_VERSION = "0.10.2"
DEFAULT_NODE_PORT_RANGE = (30000, 32767)

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_HOSTNAME = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_ROUTE_SPEC = re.compile(
    r"^\s*(?P<host>[^/\s]+)(?P<path>/\S*)\s*(?:->|=)\s*"
    r"(?:(?P<ns>[a-z0-9-]+)/)?(?P<svc>[a-z0-9-]+):(?P<port>\d+)\s*$"
)


class ConfigError(ValueError):
    """A configuration or usage problem: the CLI maps it to exit code 2."""


@dataclass(frozen=True)
class Route:
    """One HTTPRoute: requests for host+path prefix go to a Service port."""

    host: str
    path: str
    service: str
    port: int
    namespace: str = "default"
    strip_path: bool = True
    name: str = ""

    @property
    def object_name(self) -> str:
        """The HTTPRoute's name: explicit, else derived from host and path (stable across runs)."""
        if self.name:
            return self.name
        raw = f"{self.host}-{self.path.strip('/')}".lower()
        slug = re.sub(r"[^a-z0-9]+", "-", raw).strip("-")
        return slug[:63].rstrip("-") or "route"


@dataclass(frozen=True)
class BootstrapConfig:
    """Everything `lbsync bootstrap` installs, pinned. Defaults follow the tutorial."""

    gateway_api_version: str = DEFAULT_GATEWAY_API_VERSION
    gateway_api_crds_file: str | None = None
    gateway_api_url: str = GATEWAY_API_URL
    namespace: str = "kong"
    release: str = "kong"
    chart: str = "kong/ingress"
    chart_version: str = DEFAULT_CHART_VERSION
    repo_name: str = "kong"
    repo_url: str = "https://charts.konghq.com"
    proxy_port: int = 80
    node_port: int = 32001
    node_port_range: tuple[int, int] = DEFAULT_NODE_PORT_RANGE
    gateway_class: str = "kong-class"
    gateway: str = "kong-gateway"
    hostname: str | None = None
    routes: tuple[Route, ...] = field(
        default_factory=lambda: (Route("worlds.com", "/world1", "hello-world-1-svc", 80),)
    )
    access_namespace: str = "kong"
    service_account: str = "lbsync"
    wait_timeout: float = 300.0

    @property
    def crds_source(self) -> str:
        """Where the Gateway API bundle comes from: a local file, else the pinned release URL."""
        if self.gateway_api_crds_file:
            return self.gateway_api_crds_file
        return self.gateway_api_url.format(version=self.gateway_api_version)

    @property
    def proxy_service(self) -> str:
        """The chart's proxy Service name (`<release>-gateway-proxy`)."""
        return f"{self.release}-gateway-proxy"

    @property
    def deployments(self) -> tuple[str, str]:
        """The chart's two Deployments: the controller (KIC) and Kong itself."""
        return (f"{self.release}-controller", f"{self.release}-gateway")

    @property
    def admin_service(self) -> str:
        return f"{self.release}-gateway-admin"


def parse_route(spec: str) -> Route:
    """Parse `host/path -> [namespace/]service:port` (or `=` instead of `->`)."""
    m = _ROUTE_SPEC.match(spec)
    if not m:
        raise ConfigError(
            f"route {spec!r}: expected 'host/path -> namespace/service:port', "
            "e.g. 'worlds.com/world1 -> default/hello-world-1-svc:80'"
        )
    return Route(
        host=m["host"].lower(),
        path=m["path"],
        service=m["svc"],
        port=int(m["port"]),
        namespace=m["ns"] or "default",
    )


def _route_from_mapping(raw: Any, index: int) -> Route:
    if isinstance(raw, str):
        return parse_route(raw)
    if not isinstance(raw, dict):
        raise ConfigError(f"routes[{index}]: expected a mapping or 'host/path -> svc:port'")
    unknown = set(raw) - {"host", "path", "backend", "strip_path", "name"}
    if unknown:
        raise ConfigError(f"routes[{index}]: unknown keys {sorted(unknown)}")
    try:
        route = parse_route(f"{raw['host']}{raw.get('path', '/')} -> {raw['backend']}")
    except KeyError as exc:
        raise ConfigError(f"routes[{index}]: missing key {exc.args[0]!r}") from None
    return replace(
        route, strip_path=bool(raw.get("strip_path", True)), name=str(raw.get("name", ""))
    )


def _port_range(raw: Any) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", str(raw))
    if not m or int(m[1]) > int(m[2]):
        raise ConfigError(f"node_port_range {raw!r}: expected 'LOW-HIGH', e.g. 30000-32767")
    return int(m[1]), int(m[2])


# Config file layout -> dataclass field names. Flat fields keep the dataclass simple while the
# file stays grouped the way people think about it.
_SECTIONS: dict[str, dict[str, str]] = {
    "gateway_api": {"version": "gateway_api_version", "crds_file": "gateway_api_crds_file",
                    "url": "gateway_api_url"},
    "kong": {"namespace": "namespace", "release": "release", "chart": "chart",
             "chart_version": "chart_version", "repo_name": "repo_name", "repo_url": "repo_url",
             "proxy_port": "proxy_port", "node_port": "node_port"},
    "gateway": {"class_name": "gateway_class", "name": "gateway", "hostname": "hostname"},
    "access": {"namespace": "access_namespace", "service_account": "service_account"},
}
_TOP_LEVEL = {"routes", "wait_timeout", "node_port_range"}
_INT_FIELDS = {"proxy_port", "node_port"}


def config_from_mapping(data: Any) -> BootstrapConfig:
    """Build a config from the parsed YAML file; unknown keys are errors (typos must not pass)."""
    if data is None:
        return validate(BootstrapConfig())
    if not isinstance(data, dict):
        raise ConfigError("bootstrap config: expected a mapping at the top level")
    unknown = set(data) - set(_SECTIONS) - _TOP_LEVEL
    if unknown:
        raise ConfigError(f"bootstrap config: unknown keys {sorted(unknown)}")
    values: dict[str, Any] = {}
    for section, keys in _SECTIONS.items():
        values.update(_section_values(section, keys, data.get(section)))
    if "routes" in data:
        values["routes"] = tuple(
            _route_from_mapping(r, i) for i, r in enumerate(data["routes"] or [])
        )
    if "wait_timeout" in data:
        values["wait_timeout"] = _number("wait_timeout", data["wait_timeout"])
    if "node_port_range" in data:
        values["node_port_range"] = _port_range(data["node_port_range"])
    return validate(BootstrapConfig(**values))


def _section_values(section: str, keys: dict[str, str], raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"bootstrap config: {section}: expected a mapping")
    unknown = set(raw) - set(keys)
    if unknown:
        raise ConfigError(f"bootstrap config: {section}: unknown keys {sorted(unknown)}")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = keys[key]
        if name in _INT_FIELDS:
            out[name] = int(_number(f"{section}.{key}", value))
        elif isinstance(value, float):
            # `chart_version: 1.10` is the float 1.1 to YAML: refuse rather than guess.
            raise ConfigError(f"bootstrap config: {section}.{key}: YAML read {value!r} as a "
                              "number; quote it")
        else:
            out[name] = None if value is None else str(value)
    return out


def _number(name: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"bootstrap config: {name}: expected a number, got {value!r}") from None


def validate(cfg: BootstrapConfig) -> BootstrapConfig:
    """Reject what the cluster would reject later, with a message naming the setting."""
    for label, value in (("kong.namespace", cfg.namespace), ("kong.release", cfg.release),
                         ("gateway.class_name", cfg.gateway_class), ("gateway.name", cfg.gateway),
                         ("access.namespace", cfg.access_namespace),
                         ("access.service_account", cfg.service_account)):
        if not _DNS_LABEL.match(value):
            raise ConfigError(f"{label} {value!r}: not a valid Kubernetes name")
    if cfg.hostname is not None and not _HOSTNAME.match(cfg.hostname):
        raise ConfigError(f"gateway.hostname {cfg.hostname!r}: not a valid hostname")
    if not 1 <= cfg.proxy_port <= 65535:
        raise ConfigError(f"kong.proxy_port {cfg.proxy_port}: out of 1-65535")
    if not 1 <= cfg.node_port <= 65535:
        raise ConfigError(f"kong.node_port {cfg.node_port}: out of 1-65535")
    if not re.fullmatch(r"v\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?", cfg.gateway_api_version):
        raise ConfigError(
            f"gateway_api.version {cfg.gateway_api_version!r}: expected vMAJOR.MINOR.PATCH"
        )
    if cfg.wait_timeout <= 0:
        raise ConfigError("wait_timeout: must be positive")
    names = [r.object_name for r in cfg.routes]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"routes: duplicate route names {dupes}; give each a 'name'")
    return cfg
