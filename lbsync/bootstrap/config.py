"""Bootstrap configuration: one file (or flags) names and pins everything the installer touches.

Declared with the same schema machinery as the daemon's file (`lbsync.schema`): each key's
type, default, range and help are stated once, and one validator checks the file and the
flags alike (flags are written into the document before it is validated). Pure: reading the
file is the caller's job. Every error names the key, exit 2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from lbsync import schema
from lbsync.config import HOSTNAME_PATTERN, LB_CLASS, LB_CLASS_PATTERN, ip_addresses
from lbsync.errors import ConfigError
from lbsync.schema import Rule, section, setting

DEFAULT_GATEWAY_API_VERSION = "v1.0.0"
GATEWAY_API_URL = (
    "https://github.com/kubernetes-sigs/gateway-api/releases/download/{version}/standard-install.yaml"
)
# Pinned: chart versions float otherwise, and each chart bump can change KIC's major version.
# 0.24.0 (KIC 3.5, Kong 3.9) is the newest tested, with helm 4 and 3; 0.10.2 (KIC 3.0, Kong
# 3.5) is tested as the release it upgrades from.
DEFAULT_CHART_VERSION = "0.24.0"
# A bound token's lifetime: long enough that a weekly renewal has weeks of slack, short
# enough that a copied kubeconfig stops working by itself (docs/bootstrap.md, section 5).
DEFAULT_TOKEN_LIFETIME = "30d"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_LISTENERS = 64  # the Gateway API's limit per Gateway

DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
HOSTNAME = r"(\*\.)?[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?"
_ROUTE_SPEC = re.compile(
    r"\s*(?P<host>[^/\s]+)(?P<path>/\S*)\s*(?:->|=)\s*"
    r"(?:(?P<ns>[a-z0-9-]+)/)?(?P<svc>[a-z0-9-]+):(?P<port>\d+)\s*"
)


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
    def spec(self) -> str:
        """The route as a one-line spec, the form `--route` and the file accept."""
        return f"{self.host}{self.path} -> {self.namespace}/{self.service}:{self.port}"

    @property
    def object_name(self) -> str:
        """The HTTPRoute's name: explicit, else derived from host and path (stable across runs)."""
        if self.name:
            return self.name
        raw = f"{self.host}-{self.path.strip('/')}".lower()
        slug = re.sub(r"[^a-z0-9]+", "-", raw).strip("-")
        return slug[:63].rstrip("-") or "route"


def parse_route(spec: str, key: str = "route") -> Route:
    """Parse `host/path -> [namespace/]service:port` (or `=` instead of `->`)."""
    m = _ROUTE_SPEC.fullmatch(spec)
    if not m or not 1 <= int(m["port"]) <= 65535:
        raise ConfigError(
            f"{key}: {spec!r}: expected 'host/path -> namespace/service:port', "
            "e.g. 'worlds.com/world1 -> default/hello-world-1-svc:80'"
        )
    return Route(host=m["host"].lower(), path=m["path"], service=m["svc"],
                 port=int(m["port"]), namespace=m["ns"] or "default")


def duration_seconds(text: str) -> int:
    """`30d`, `12h`, `90m`, `600s` (or plain seconds) in seconds."""
    m = re.fullmatch(r"\s*(\d{1,9})\s*([smhd]?)\s*", text)
    if not m:
        raise ValueError(text)
    return int(m[1]) * _UNITS[m[2] or "s"]


def _duration(value: Any, key: str) -> str:
    """A token lifetime: 10 minutes (the API server's minimum) to 366 days."""
    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
    try:
        seconds = duration_seconds(text)
    except ValueError:
        raise ConfigError(f"{key}: {value!r}: expected a duration such as 30d, 12h or 90m"
                          ) from None
    if not 600 <= seconds <= 366 * 86400:
        raise ConfigError(f"{key}: {value!r}: must be between 10m and 366d")
    return text.strip()


@dataclass(frozen=True)
class RouteSpec:
    """A route written as a mapping in the file."""

    host: str = setting(help="Host the route matches.", pattern=HOSTNAME, kind="hostname")
    backend: str = setting(help="[namespace/]service:port the route sends requests to.",
                           kind="[namespace/]service:port")
    path: str = setting("/", help="Path prefix the route matches.")
    strip_path: bool = setting(True, help="Remove the matched prefix before proxying.")
    name: str = setting("", help="The HTTPRoute's name (default: from host and path).")


def _routes(value: Any, key: str) -> tuple[Route, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{key}: must be a list, got {schema.type_name(value)}")
    routes = []
    for i, item in enumerate(value):
        where = f"{key}[{i}]"
        if isinstance(item, str):
            routes.append(parse_route(item, where))
            continue
        spec = schema.load(RouteSpec, item, prefix=where + ".")
        route = parse_route(f"{spec.host}{spec.path} -> {spec.backend}", where)
        routes.append(Route(route.host, route.path, route.service, route.port,
                            route.namespace, spec.strip_path, spec.name))
    return tuple(routes)


@dataclass(frozen=True)
class GatewayApiSection:
    version: str = setting(DEFAULT_GATEWAY_API_VERSION, pattern=r"v\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?",
                           kind="vMAJOR.MINOR.PATCH",
                           help="The Gateway API CRD bundle (standard channel) to install.")
    crds_file: Path | None = setting(None, help="A local standard-install.yaml, for hosts "
                                     "without internet access; unset: download `url`.")
    url: str = setting(GATEWAY_API_URL, help="Where the bundle is downloaded from; {version} "
                       "is replaced.")

    @property
    def crds_source(self) -> str:
        """Where the bundle comes from: a local file, else the pinned release URL."""
        if self.crds_file is not None:
            return str(self.crds_file)
        return self.url.format(version=self.version)


@dataclass(frozen=True)
class KongSection:
    namespace: str = setting("kong", pattern=DNS_LABEL, kind="Kubernetes name",
                             help="Kong's namespace (the helm release's).")
    release: str = setting("kong", pattern=DNS_LABEL, kind="Kubernetes name",
                           help="The helm release name.")
    chart: str = setting("ingress", pattern=r"([a-z0-9._-]+/)?[a-z0-9._-]+", kind="chart name",
                         help="The chart's name in `repo_url` (`kong/ingress` is read as "
                         "`ingress`).")
    chart_version: str = setting(DEFAULT_CHART_VERSION, help="The pinned chart version.",
                                 pattern=r"[0-9A-Za-z.+-]{1,64}", kind="version")
    repo_url: str = setting("https://charts.konghq.com", help="The chart repository. helm "
                            "fetches from it directly (`--repo`): your helm repositories "
                            "are neither used nor changed.")
    admin_http: bool = setting(False, help="Kong's plain-HTTP admin API on port 8001 "
                               "(chart value gateway.admin.http.enabled). Unauthenticated, "
                               "and the controller does not use it (it talks to the TLS admin "
                               "port): turn on only to debug, from inside the cluster.")
    manager: bool = setting(False, help="Kong Manager (chart value gateway.manager.enabled). "
                            "The chart publishes it as a NodePort Service on every node.")
    proxy_port: int = setting(80, low=1, high=65535, help="The proxy Service's HTTP port "
                              "(the Gateway listener's port).")
    node_port: int = setting(32001, low=1, high=65535, help="The proxy's node port, which "
                             "NGINX on the gateway balances across.")

    REMOVED: ClassVar[dict[str, str]] = {
        "repo_name": "no longer used: helm fetches the chart from kong.repo_url directly "
                     "(--repo), leaving your helm repositories alone; delete the key",
    }

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


@dataclass(frozen=True)
class GatewaySection:
    class_name: str = setting("kong-class", pattern=DNS_LABEL, kind="Kubernetes name",
                              help="The GatewayClass.")
    name: str = setting("kong-gateway", pattern=DNS_LABEL, kind="Kubernetes name",
                        help="The Gateway, in Kong's namespace.")
    hostname: str | None = setting(None, pattern=HOSTNAME, kind="hostname",
                                   help="One listener for this hostname (e.g. "
                                   "`*.worlds.com`) that every route's host must match; "
                                   "unset: one listener per route host.")


@dataclass(frozen=True)
class AccessSection:
    namespace: str = setting("kong", pattern=DNS_LABEL, kind="Kubernetes name",
                             help="Namespace of lbsync's ServiceAccount.")
    service_account: str = setting("lbsync", pattern=DNS_LABEL, kind="Kubernetes name",
                                   help="lbsync's read-only ServiceAccount.")
    credential: str = setting(
        "token-request", choices=("token-request", "secret"),
        help="What the gateway host's kubeconfig carries: `token-request`, a bound token "
        "that expires after `token_lifetime` (renew it with `lbsync bootstrap renew-token`); "
        "`secret`, a never-expiring token kept in a `kubernetes.io/service-account-token` "
        "Secret (revoked only by deleting the Secret).")
    token_lifetime: str = setting(
        DEFAULT_TOKEN_LIFETIME, parse=_duration, kind="duration (10m to 366d)",
        help="How long a `token-request` token is valid, e.g. `30d`, `12h` (the API server "
        "may grant less: --service-account-max-token-expiration).")

    @property
    def token_seconds(self) -> int:
        return duration_seconds(self.token_lifetime)


@dataclass(frozen=True)
class LoadBalancerSection:
    enabled: bool = setting(
        False, help="Kong's proxy as a Service of type LoadBalancer with lbsync's class: "
        "lbsync on the gateway host(s) serves it (an NGINX stream listener per port) and "
        "writes the gateway's address into its status, which the Gateway's status addresses "
        "follow. lbsync's account may then also list and watch Services, write their status "
        "and Events, and hold a Lease (docs/bootstrap.md). Off: a NodePort Service behind "
        "NGINX's http upstream.")
    load_balancer_class: str = setting(
        LB_CLASS, pattern=LB_CLASS_PATTERN, kind="DOMAIN/NAME",
        help="spec.loadBalancerClass of the proxy Service: lbsync's "
        "loadbalancer.load_balancer_class.")
    addresses: tuple[str, ...] = setting(
        (), parse=ip_addresses, kind="list of IPs", example=["203.0.113.10"],
        help="The gateway's public IP addresses, for the lbsync config that "
        "`apply --write-kubeconfig` writes (loadbalancer.addresses there).")
    hostname: str = setting("", pattern=HOSTNAME_PATTERN + "|", kind="hostname",
                            help="The gateway's DNS name, shown in status instead of the "
                            "addresses (lbsync's loadbalancer.hostname).")

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule("addresses", "give the gateway's public IP addresses: lbsync's NGINX listens "
             "on them", lambda lb: not lb.enabled or bool(lb.addresses)),
    )


DEFAULT_ROUTES = (Route("worlds.com", "/world1", "hello-world-1-svc", 80),)


@dataclass(frozen=True)
class BootstrapConfig:
    """Everything `lbsync bootstrap` installs, pinned. Defaults follow the tutorial."""

    gateway_api: GatewayApiSection = section(GatewayApiSection, help="Gateway API CRDs.")
    kong: KongSection = section(KongSection, help="Kong, installed with helm.")
    gateway: GatewaySection = section(GatewaySection, help="The GatewayClass and Gateway.")
    access: AccessSection = section(AccessSection, help="lbsync's read-only account.")
    loadbalancer: LoadBalancerSection = section(
        LoadBalancerSection, help="lbsync as the cluster's load balancer for Kong's proxy.")
    routes: tuple[Route, ...] = setting(
        DEFAULT_ROUTES, parse=_routes, kind="list of routes", items=RouteSpec,
        help="HTTPRoutes: each 'host/path -> [namespace/]service:port', or a mapping with "
        "host, path, backend, strip_path (default true) and name.")
    wait_timeout: float = setting(300.0, low=0.1, high=86_400,
                                  help="Seconds each wait (Deployments, statuses) may take.")
    node_port_range: tuple[int, int] = setting(
        (30000, 32767), parse=schema.port_range, kind="LOW-HIGH",
        help="The cluster's NodePort range (kube-apiserver --service-node-port-range).")

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule("routes", "two routes have the same name; give each a 'name'",
             lambda c: len({r.object_name for r in c.routes}) == len(c.routes)),
        Rule("routes", "a route's host does not match {p}gateway.hostname: the Gateway would "
             "refuse it (NoMatchingListenerHostname)",
             lambda c: not c.gateway.hostname or all(
                 hostnames_intersect(c.gateway.hostname, r.host) for r in c.routes)),
        Rule("routes", f"more than {MAX_LISTENERS} different hosts (one Gateway listener "
             "each); set gateway.hostname to a wildcard that covers them",
             lambda c: c.gateway.hostname or len({r.host for r in c.routes}) <= MAX_LISTENERS),
    )

    @property
    def route_namespaces(self) -> tuple[str, ...]:
        """The namespaces the routes live in: the only ones the Gateway admits routes from."""
        return tuple(sorted({r.namespace for r in self.routes}))


def hostnames_intersect(a: str, b: str) -> bool:
    """Whether two Gateway API hostnames have a host in common (`*.` stands for one or more
    labels), as a listener and a route must."""
    if a == b:
        return True
    if a.startswith("*.") and b.startswith("*."):
        return a.endswith(b[1:]) or b.endswith(a[1:])
    if a.startswith("*."):
        return b.endswith(a[1:])
    if b.startswith("*."):
        return a.endswith(b[1:])
    return False


def load(raw: Any, base: Path | None = None) -> BootstrapConfig:
    """Validate a parsed bootstrap file (None: all defaults)."""
    return schema.load(BootstrapConfig, raw, base=base)
