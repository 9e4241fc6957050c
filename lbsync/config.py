"""The daemon's configuration file: every key declared once (type, default, range, help) as a
schema field, loaded and validated by `lbsync.schema`. Reading the file is the only I/O here.

The reference docs and `config/lbsync.example.yaml` are generated from these declarations
(`lbsync.configdoc`), so they cannot drift from the code. Every error names the key, exit 2.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

from lbsync import schema
from lbsync.errors import ConfigError
from lbsync.schema import Rule, section, setting

DEFAULT_PATH = Path("/etc/lbsync/config.yaml")
ENV_CONFIG = "LBSYNC_CONFIG"

UPSTREAM_NAME = r"[A-Za-z0-9_]{1,64}"
# DNS-1123 label, as Kubernetes requires for namespaces and Service names.
DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
# The NGINX open source `server` parameters that make sense for a node: anything else
# (arbitrary text, `;`, `{`) could change the meaning of the file.
SERVER_OPTION = re.compile(
    r"weight=[1-9][0-9]{0,3}|max_conns=[0-9]{1,6}|max_fails=[0-9]{1,4}"
    r"|fail_timeout=[0-9]{1,6}(ms|s|m|h)?|backup"
)


# --- values that are not plain YAML scalars: each parse takes (value, key) ------------------


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
    raise ConfigError(f"{key}: must be a command line (a string or a list of strings)")


def _service(value: Any, key: str) -> str:
    text = value.strip() if isinstance(value, str) else ""
    namespace, _, name = text.partition("/")
    if not (re.fullmatch(DNS_LABEL, namespace) and re.fullmatch(DNS_LABEL, name)):
        raise ConfigError(f"{key}: {value!r} must be namespace/name")
    return text


def _service_port(value: Any, key: str) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= 65535:
            raise ConfigError(f"{key}: {value} is out of range 1..65535")
        return value
    if isinstance(value, str) and re.fullmatch(DNS_LABEL, value):
        return value
    raise ConfigError(f"{key}: must be a port number or a port name, got {value!r}")


def _server_options(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{key}: must be a string")
    for token in value.split():
        if not SERVER_OPTION.fullmatch(token):
            raise ConfigError(f"{key}: {token!r} is not an allowed server parameter "
                              "(weight=, max_conns=, max_fails=, fail_timeout=, backup)")
    return " ".join(value.split())


def _cidrs(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{key}: must be a list of CIDRs, e.g. [10.0.0.0/16]")
    out = []
    for i, item in enumerate(value):
        try:
            out.append(str(ipaddress.ip_network(str(item), strict=True)))
        except ValueError as exc:
            raise ConfigError(f"{key}[{i}]: {item!r} is not a network ({exc})") from None
    return tuple(out)


def _listen(value: Any, key: str) -> str:
    match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})",
                         value.strip() if isinstance(value, str) else "")
    if not match or int(match.group(2)) > 65535:
        raise ConfigError(f"{key}: {value!r} must be HOST:PORT, e.g. 127.0.0.1:9108")
    return f"{match.group(1)}:{int(match.group(2))}"


# --- the schema -------------------------------------------------------------------------------


@dataclass(frozen=True)
class KubernetesConfig:
    kubeconfig: Path | None = setting(
        None, help="Kubeconfig of a read-only account (get/list/watch nodes and services). "
        "`lbsync bootstrap apply --write-kubeconfig FILE` makes one. Unset: the in-cluster "
        "account, then $KUBECONFIG, then ~/.kube/config.",
        example="/etc/lbsync/kubeconfig")
    context: str | None = setting(None, help="Context in that kubeconfig; unset: its "
                                  "current-context.")


@dataclass(frozen=True)
class UpstreamConfig:
    """One NGINX upstream: either a Service's node port, or a fixed node port."""

    name: str = setting(help="The upstream's name in NGINX.", pattern=UPSTREAM_NAME,
                        kind="[A-Za-z0-9_]{1,64}")
    service: str | None = setting(
        None, help="namespace/name of the NodePort or LoadBalancer Service whose node port "
        "the servers use.", parse=_service, kind="namespace/name")
    port: int | str | None = setting(
        None, help="The Service port (number or name) whose nodePort is used.",
        parse=_service_port, kind="integer or string")
    context: str = setting(
        "http", choices=("http", "stream"),
        help="Where root's upstream block stands: http {} (Kong's proxy), or stream {} for "
        "TCP passed through untouched (TLS to Kong); stream upstreams are probed by TCP "
        "connect.")
    node_port: int | None = setting(
        None, help="Instead of service/port: a fixed node port, no lookup.", low=1,
        high=65535)

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule("", "give either node_port or service and port, not both",
             lambda u: u.node_port is None or (u.service is None and u.port is None)),
        Rule("", "needs service (namespace/name) and port, or node_port",
             lambda u: u.node_port is not None or u.service is not None),
        Rule("port", "required", lambda u: u.service is None or u.port is not None),
    )

    @property
    def namespace(self) -> str:
        return (self.service or "").partition("/")[0]

    @property
    def service_name(self) -> str:
        return (self.service or "").partition("/")[2]

    @property
    def service_ref(self) -> str:
        return self.service or ""


def _status_range(value: Any, key: str) -> tuple[int, int]:
    low, high = schema.port_range(value if not isinstance(value, int) else f"{value}-{value}",
                                  key)
    if not 100 <= low <= high <= 599:
        raise ConfigError(f"{key}: {value!r}: expected an HTTP status or LOW-HIGH, e.g. 200-399")
    return low, high


@dataclass(frozen=True)
class ProbeConfig:
    enabled: bool = setting(True, help="Probe each server from the gateway, so that a crashed "
                            "or hung node leaves NGINX in seconds, not after the ~40 s its Ready "
                            "condition takes.")
    kind: str = setting("http", choices=("http", "tcp"),
                        help="An HTTP GET of `path` on the server's port, or only a TCP connect "
                        "(which a hung node still accepts: its kernel answers for it).")
    path: str = setting("/", pattern=r"/[!-~]{0,255}", kind="URL path",
                        help="For kind http: the path to GET.")
    expect: tuple[int, int] = setting(
        (200, 499), parse=_status_range, kind="LOW-HIGH",
        help="For kind http: the statuses that mean up (Kong answers an unknown route with "
        "404, which still proves the node forwards to Kong).")
    interval: float = setting(2.0, low=0.1, high=300, help="Seconds between two probes of a "
                              "server.")
    timeout: float = setting(1.0, low=0.05, high=60, help="Seconds a probe may take.")
    rise: int = setting(2, low=1, high=100, help="Successes in a row that bring a down "
                        "server back.")
    fall: int = setting(3, low=1, high=100, help="Failures in a row that take a server out "
                        "(a server never seen up leaves at its first failure).")
    concurrency: int = setting(128, low=1, high=512,
                               help="Probes in flight at once (sockets, in one thread), at "
                               "most: 5,000 nodes must not mean 5,000 sockets. Hung nodes hold "
                               "a slot for `timeout` each.")

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule("timeout", "must be shorter than {p}interval", lambda p: p.timeout < p.interval),
    )


@dataclass(frozen=True)
class NodesConfig:
    address_type: str = setting("InternalIP", choices=("InternalIP", "ExternalIP"),
                                help="Which node address the servers use; a node without one "
                                "is left out.")
    label_selector: str = setting("", help="Kubernetes label selector, applied by the API "
                                  "server, e.g. `node-role.kubernetes.io/edge=true`.")
    require_ready: bool = setting(True, help="Leave out nodes whose Ready condition is not "
                                  "True.")
    min_nodes: int = setting(1, low=1, high=100_000,
                             help="Fewer eligible nodes: refuse to write, keep the file, exit "
                             "1.")
    allow_loopback: bool = setting(
        False, help="Accept loopback node addresses (127.0.0.0/8, ::1). Only for labs and the "
        "demo: in production a node at 127.0.0.1 would make the public site serve the "
        "gateway's own local services.")
    allowed_cidrs: tuple[str, ...] = setting(
        (), parse=_cidrs, kind="list of CIDRs", example=["10.0.0.0/16"],
        help="If set, only node addresses inside these networks become servers.")
    port_range: tuple[int, int] = setting(
        (30000, 32767), parse=schema.port_range, kind="LOW-HIGH",
        help="Node ports outside this range are refused (kube-apiserver's "
        "--service-node-port-range): a Service must not point NGINX at a host port such as "
        "22 or lbsync's own.")
    max_shrink: float = setting(
        0.5, low=0, high=1,
        help="The largest share of an upstream's servers one pass may remove. A bigger drop "
        "(a control-plane or network outage looks like that) is held back until it has "
        "lasted nodes.shrink_confirm seconds.")
    shrink_confirm: float = setting(60.0, low=0, high=86_400,
                                    help="Seconds a big drop must last before it is applied.")
    probe: ProbeConfig = section(ProbeConfig, help="Active health checks from the gateway.")


@dataclass(frozen=True)
class NginxConfig:
    servers_dir: Path = setting(
        Path("/var/lib/lbsync/servers"),
        help="Where lbsync writes one NAME.servers file per upstream: `server` lines only. "
        "The root side (the test command) checks every line and publishes the files where "
        "nginx includes them, inside `upstream` blocks root defines (see the README).")
    template: Path | None = setting(None, help="A Jinja2 template replacing the built-in one "
                                    "for each upstream's servers file (see the README); its "
                                    "output must be `server` lines.")
    test_command: tuple[str, ...] = setting(
        ("systemctl", "--no-ask-password", "start", "lbsync-nginx-test.service"),
        parse=_command, kind="command",
        help="Run after writing: publishes the checked files to nginx and runs `nginx -t` "
        "(the packaged root unit runs `python3 -m lbsync.publish`); on failure lbsync's "
        "files are put back.")
    reload_command: tuple[str, ...] = setting(
        ("systemctl", "--no-ask-password", "start", "lbsync-nginx-reload.service"),
        parse=_command, kind="command",
        help="Reloads nginx and confirms that new workers run the new configuration (the "
        "packaged root unit runs `python3 -m lbsync.nginxctl reload`).")
    pid_file: Path | None = setting(
        None, help="nginx's pid file, when lbsync may read nginx's processes itself: then it "
        "confirms each reload by the new worker generation. Unset with the packaged units, "
        "which confirm as root.", example="/run/nginx.pid")
    server_options: str = setting(
        "max_fails=3 fail_timeout=10s", parse=_server_options,
        help="Appended to every server line. Allowed: weight=, max_conns=, max_fails=, "
        "fail_timeout=, backup. max_fails/fail_timeout are NGINX's passive health checks.")
    command_timeout: float = setting(30.0, low=1, high=600,
                                     help="Seconds before the test or reload command counts "
                                     "as failed.")
    error_log: Path | None = setting(
        None, help="nginx's error log, when lbsync may read it (with nginx.pid_file): a "
        "refused reload is then known at once, with nginx's own words (which port another "
        "process holds). Unset with the packaged units: their reload unit confirms the "
        "reload as root, and lbsync finds who holds a port in /proc/net instead "
        "(docs/loadbalancer.md).")
    state_dir: Path = setting(
        Path("/run/lbsync"), help="Where lbsync keeps its lock and the record of what NGINX "
        "last loaded (mode 0700; systemd's RuntimeDirectory).")

    REMOVED: ClassVar[dict[str, str]] = {
        "output": "replaced by nginx.servers_dir: lbsync now writes only server lines, which "
                  "root publishes into upstream blocks it defines (README: Upgrading)",
    }

    def servers_file(self, upstream: str) -> Path:
        return self.servers_dir / f"{upstream}.servers"


@dataclass(frozen=True)
class SyncConfig:
    debounce: float = setting(0.25, low=0, high=60,
                              help="Seconds of quiet after the last change before a pass.")
    max_delay: float = setting(2.0, low=0, high=600,
                               help="A pass starts at most this long after the first change.")
    min_reload_interval: float = setting(0.5, low=0, high=600,
                                         help="Seconds between two NGINX reloads, at least.")
    resync: float = setting(300.0, low=1, high=86_400,
                            help="Seconds between full re-lists, a safety net.")
    watch_timeout: int = setting(300, low=1, high=3600,
                                 help="Server-side timeout of each watch request, seconds.")
    ready_after_failure: float = setting(60.0, low=1, high=86_400,
                                         help="/readyz turns 503 when passes have failed "
                                         "for this long.")

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule("max_delay", "must be at least {p}debounce", lambda s: s.max_delay >= s.debounce),
    )


@dataclass(frozen=True)
class HttpConfig:
    listen: str = setting("127.0.0.1:9108", parse=_listen, kind="HOST:PORT",
                          help="Health, metrics and status of `lbsync run`, and POST /sync. "
                          "A loopback address unless allow_remote: the gateway faces the "
                          "internet.")
    allow_remote: bool = setting(
        False, help="Let http.listen be a non-loopback address (e.g. for a Prometheus on "
        "another host; then firewall it). lbsync warns at start.")

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule("listen", "not a loopback address; set {p}allow_remote: true to expose /status "
             "and POST /sync beyond this host",
             lambda h: h.allow_remote or h.is_loopback),
    )

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    @property
    def is_loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"


@dataclass(frozen=True)
class LogConfig:
    format: str | None = setting(None, choices=("json", "console"),
                                 help="json or console; unset: console on a TTY, else json.")
    level: str = setting("info", choices=("debug", "info", "warning", "error"),
                         help="The lowest level logged.")


@dataclass(frozen=True)
class LeaderElectionConfig:
    enabled: bool = setting(True, help="With more than one gateway, only the holder of a "
                            "Kubernetes Lease writes Service statuses and events; every "
                            "gateway keeps its NGINX in step.")
    namespace: str = setting("kong", pattern=DNS_LABEL, kind="Kubernetes name",
                             help="The Lease's namespace.")
    name: str = setting("lbsync-loadbalancer", pattern=DNS_LABEL, kind="Kubernetes name",
                        help="The Lease's name (the same on every gateway).")
    identity: str = setting("", pattern=r"[A-Za-z0-9._:-]{0,128}", kind="string",
                            help="This gateway's name in the Lease; unset: its hostname.")
    lease_duration: float = setting(15.0, low=2, high=3600,
                                    help="Seconds a leader's Lease lasts without renewal: the "
                                    "longest a failed writer blocks the others.")
    renew_deadline: float = setting(10.0, low=1, high=3600,
                                    help="Seconds a leader keeps trying to renew before it "
                                    "stops writing.")
    retry_period: float = setting(2.0, low=0.1, high=600,
                                  help="Seconds between two tries to take or renew the Lease.")

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule("renew_deadline", "must be shorter than {p}lease_duration",
             lambda e: e.renew_deadline < e.lease_duration),
        Rule("retry_period", "must be shorter than {p}renew_deadline",
             lambda e: e.retry_period < e.renew_deadline),
    )


def _ip(value: Any, key: str) -> str:
    try:
        address = ipaddress.ip_address(value if isinstance(value, str) else "")
    except ValueError:
        raise ConfigError(f"{key}: {value!r} is not an IP address") from None
    return str(address)


def ip_addresses(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{key}: must be a list of IP addresses")
    return tuple(_ip(v, f"{key}[{i}]") for i, v in enumerate(value))


def _ports(value: Any, key: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool)
                                             and 1 <= v <= 65535 for v in value):
        raise ConfigError(f"{key}: must be a list of port numbers")
    return tuple(sorted(set(value)))


LB_CLASS = "lbsync.io/nginx"
LB_CLASS_PATTERN = r"[a-z0-9.-]{1,253}/[A-Za-z0-9._-]{1,63}"
HOSTNAME_PATTERN = r"([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]*[a-z0-9])?"


@dataclass(frozen=True)
class LoadBalancerConfig:
    enabled: bool = setting(False, help="Serve Services of type LoadBalancer: one NGINX "
                            "listener per Service port, and their status.loadBalancer.ingress "
                            "written. Off by default: it writes to the API.")
    load_balancer_class: str = setting(
        LB_CLASS, pattern=LB_CLASS_PATTERN,
        kind="DOMAIN/NAME", help="Services whose spec.loadBalancerClass is this are served.")
    annotation: str = setting(
        "", pattern=r"([a-z0-9.-]{1,253}/)?[A-Za-z0-9._-]{1,63}|", kind="annotation key",
        help="Also serve Services (of any class) annotated with this key set to \"true\"; "
        "unset: the class alone decides.")
    addresses: tuple[str, ...] = setting(
        (), parse=ip_addresses, kind="list of IPs", example=["203.0.113.10"],
        help="The gateway's public IP addresses: NGINX listens on them and they are what "
        "Services' status.loadBalancer.ingress shows.")
    hostname: str = setting("", pattern=HOSTNAME_PATTERN + "|", kind="hostname",
                            help="A DNS name for the gateway(s), shown in status instead of "
                            "the addresses (e.g. a name that resolves to a keepalived VIP).")
    ports: tuple[int, int] = setting(
        (1, 65535), parse=schema.port_range, kind="LOW-HIGH",
        help="Service ports NGINX may listen on; others get a warning Event and no listener.")
    reserved_ports: tuple[int, ...] = setting(
        (22, 80, 9108), parse=_ports, kind="list of ports",
        help="Ports NGINX or the host already use (the http site, sshd, lbsync): never "
        "taken by a Service's listener. Root's publisher refuses them too.")
    leader_election: LeaderElectionConfig = section(LeaderElectionConfig,
                                                    help="One status writer among gateways.")

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule("addresses", "give the gateway's addresses to serve LoadBalancer Services (NGINX "
             "listens on them)", lambda lb: not lb.enabled or bool(lb.addresses)),
    )


@dataclass(frozen=True)
class Config:
    upstreams: tuple[UpstreamConfig, ...] = setting(
        help="One NGINX upstream per entry; at least one, unless loadbalancer.enabled.",
        kind="list of upstreams", unique=("name", "upstream name"),
        example=[{"name": "k8s_cluster", "service": "kong/kong-gateway-proxy", "port": 80}])
    kubernetes: KubernetesConfig = section(KubernetesConfig, help="How to reach the cluster.")
    nodes: NodesConfig = section(NodesConfig, help="Which nodes become servers.")
    nginx: NginxConfig = section(NginxConfig, help="The file lbsync writes and how NGINX "
                                 "checks and loads it.")
    sync: SyncConfig = section(SyncConfig, help="Timing of `lbsync run`.")
    http: HttpConfig = section(HttpConfig, help="The daemon's own endpoints.")
    log: LogConfig = section(LogConfig, help="Logging.")
    loadbalancer: LoadBalancerConfig = section(
        LoadBalancerConfig, help="lbsync as the cluster's load balancer (opt-in).")

    @property
    def identity(self) -> str:
        """Which daemon this config describes: the same output and the same cluster. `lbsync
        status` compares it with the daemon's, so it never shows another daemon's state."""
        import hashlib

        k = self.kubernetes
        seed = f"{self.nginx.servers_dir}\0{k.kubeconfig}\0{k.context}"
        return hashlib.sha256(seed.encode()).hexdigest()[:16]

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule("upstreams", "must be a non-empty list (or set {p}loadbalancer.enabled)",
             lambda c: bool(c.upstreams) or c.loadbalancer.enabled),
        Rule("upstreams", "a fixed node_port is outside {p}nodes.port_range",
             lambda c: all(c.nodes.port_range[0] <= u.node_port <= c.nodes.port_range[1]
                           for u in c.upstreams if u.node_port is not None)),
    )


# --- loading ---------------------------------------------------------------------------------


def config_path(cli_value: str | None) -> Path:
    """The config file to read: the -c flag, else $LBSYNC_CONFIG, else the default."""
    if cli_value:
        return Path(cli_value)
    env = os.environ.get(ENV_CONFIG)
    return Path(env) if env else DEFAULT_PATH


def read_yaml(path: Path, what: str = "config file") -> Any:
    """A YAML file's document; every failure is one ConfigError line naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {path}: not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{what} {path}{where}: {problem}") from None


def load(path: Path, *, check_paths: bool = True) -> Config:
    """Read and validate the YAML file at `path`."""
    return parse(read_yaml(path), source=path, check_paths=check_paths)


def parse(raw: Any, *, source: Path | None = None, check_paths: bool = True) -> Config:
    """Validate an already-parsed YAML document; paths are relative to the file's directory."""
    base = source.parent if source is not None else Path.cwd()
    cfg = schema.load(Config, raw, base=base)
    if check_paths:
        check_filesystem(cfg)
    return cfg


def check_filesystem(cfg: Config) -> None:
    """Paths that must exist before lbsync can do anything useful."""
    kubeconfig = cfg.kubernetes.kubeconfig
    if kubeconfig is not None and not kubeconfig.is_file():
        raise ConfigError(f"kubernetes.kubeconfig: {kubeconfig}: no such file")
    if not cfg.nginx.servers_dir.is_dir():
        raise ConfigError(f"nginx.servers_dir: {cfg.nginx.servers_dir} is not a directory")
    template = cfg.nginx.template
    if template is not None and not template.is_file():
        raise ConfigError(f"nginx.template: {template}: no such file")
