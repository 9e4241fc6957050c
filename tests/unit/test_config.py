"""Configuration: defaults, the shipped example, and one clear error per bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lbsync import config
from lbsync.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
MINIMAL: dict[str, Any] = {
    "upstreams": [{"name": "k8s_cluster", "service": "kong/kong-gateway-proxy", "port": 80}]
}


def with_(path: str, value: Any) -> dict[str, Any]:
    """MINIMAL with one key set, e.g. with_("nginx.output", "/x")."""
    doc: dict[str, Any] = {"upstreams": list(MINIMAL["upstreams"])}
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return doc


def test_defaults() -> None:
    cfg = config.parse(MINIMAL, check_paths=False)
    up = cfg.upstreams[0]
    assert (up.namespace, up.service_name, up.port) == ("kong", "kong-gateway-proxy", 80)
    # The packaged root units: publish and test, then reload and confirm.
    assert cfg.nginx.test_command == ("systemctl", "--no-ask-password", "start",
                                      "lbsync-nginx-test.service")
    assert cfg.nginx.reload_command == ("systemctl", "--no-ask-password", "start",
                                        "lbsync-nginx-reload.service")
    assert cfg.nginx.servers_dir == Path("/var/lib/lbsync/servers")
    assert cfg.nginx.servers_file("k8s_cluster") == Path(
        "/var/lib/lbsync/servers/k8s_cluster.servers")
    assert cfg.nodes == config.NodesConfig("InternalIP", "", True, 1)
    assert cfg.http.listen == "127.0.0.1:9108"
    assert cfg.sync.debounce == 0.25


def test_example_config_loads_and_documents_every_key() -> None:
    path = ROOT / "config" / "lbsync.example.yaml"
    cfg = config.load(path, check_paths=False)
    assert cfg.upstreams[0].name == "k8s_cluster"
    text = path.read_text()
    for section, keys in {
        "kubernetes": ["kubeconfig", "context"],
        "nodes": ["address_type", "label_selector", "require_ready", "min_nodes"],
        "nginx": ["servers_dir", "template", "test_command", "reload_command", "server_options",
                  "pid_file", "state_dir"],
        "sync": ["debounce", "max_delay", "min_reload_interval", "resync"],
        "http": ["listen"],
        "log": ["format", "level"],
    }.items():
        assert f"{section}:" in text
        for key in keys:
            assert f"{key}:" in text, f"{section}.{key} is not documented in the example"


def test_fixed_node_port_and_named_service_port() -> None:
    cfg = config.parse(
        {"upstreams": [{"name": "a", "node_port": 32001},
                       {"name": "b", "service": "kong/proxy", "port": "kong-proxy"}]},
        check_paths=False,
    )
    assert cfg.upstreams[0].node_port == 32001
    assert cfg.upstreams[1].port == "kong-proxy"


def test_commands_accept_string_or_list() -> None:
    cfg = config.parse(with_("nginx.reload_command", ["systemctl", "reload", "nginx"]),
                       check_paths=False)
    assert cfg.nginx.reload_command == ("systemctl", "reload", "nginx")
    cfg = config.parse(with_("nginx.test_command", "sudo -n /usr/sbin/nginx -t"),
                       check_paths=False)
    assert cfg.nginx.test_command == ("sudo", "-n", "/usr/sbin/nginx", "-t")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({}, "upstreams: required"),
        ({"upstreams": []}, "upstreams: must be a non-empty list"),
        ({**MINIMAL, "extra": 1}, "extra: unknown key"),
        (with_("nginx.outptu", "/x"), "nginx.outptu: unknown key"),
        # A key from before the servers-lines layout says what replaced it.
        (with_("nginx.output", "/x"), "nginx.output: replaced by nginx.servers_dir"),
        (with_("nodes.min_nodes", 0), "nodes.min_nodes: 0 is out of range"),
        (with_("nodes.min_nodes", "3"), "nodes.min_nodes: must be an integer"),
        (with_("nodes.require_ready", "yes"), "nodes.require_ready: must be true or false"),
        (with_("nodes.address_type", "Hostname"), "nodes.address_type: must be one of"),
        (with_("sync.debounce", -1), "sync.debounce: -1 is out of range"),
        (with_("sync", "fast"), "sync: must be a mapping"),
        (with_("http.listen", "9108"), "http.listen: '9108' must be HOST:PORT"),
        (with_("http.listen", "0.0.0.0:9108"),
         "http.listen: not a loopback address; set http.allow_remote: true"),
        (with_("http.listen", "[::]:9108"), "http.listen: not a loopback address"),
        (with_("log.level", "loud"), "log.level: must be one of"),
        (with_("log.format", "xml"), "log.format: must be one of"),
        (with_("nginx.server_options", "max_fails=3; include /etc/passwd"),
         "nginx.server_options: 'max_fails=3;' is not an allowed server parameter"),
        (with_("nginx.server_options", "resolve"), "nginx.server_options: 'resolve'"),
        (with_("nginx.test_command", ""), "nginx.test_command: must be a command line"),
        (with_("nginx.test_command", "nginx 'unterminated"), "nginx.test_command:"),
        ({"upstreams": [{"name": "bad-name", "node_port": 32001}]},
         "upstreams[0].name: 'bad-name' must match"),
        ({"upstreams": [{"name": "a", "node_port": 22}]},
         "upstreams: a fixed node_port is outside nodes.port_range"),
        (with_("nodes.port_range", "40000-30000"), "nodes.port_range: '40000-30000'"),
        (with_("nodes.allowed_cidrs", ["10.0.0.0/33"]), "nodes.allowed_cidrs[0]: '10.0.0.0/33'"),
        (with_("sync.max_delay", 0.1), "sync.max_delay: must be at least sync.debounce"),
        ({"upstreams": [{"name": "a", "service": "noslash", "port": 80}]},
         "upstreams[0].service: 'noslash' must be namespace/name"),
        ({"upstreams": [{"name": "a", "service": "kong/proxy"}]}, "upstreams[0].port: required"),
        ({"upstreams": [{"name": "a", "service": "kong/proxy", "port": 70000}]},
         "upstreams[0].port: 70000 is out of range"),
        ({"upstreams": [{"name": "a", "node_port": 32001, "service": "a/b"}]},
         "upstreams[0]: give either node_port or service"),
        ({"upstreams": [{"name": "a"}]}, "upstreams[0]: needs service"),
        ({"upstreams": [{"name": "a", "node_port": 1}, {"name": "a", "node_port": 2}]},
         "upstreams[1].name: duplicate upstream name"),
        ({"upstreams": "k8s"}, "upstreams: must be a list, got a string"),
    ],
)
def test_bad_config_names_the_key(doc: Any, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.parse(doc, check_paths=False)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_remote_listen_address_needs_saying_so() -> None:
    doc = with_("http.listen", "0.0.0.0:9108")
    doc["http"]["allow_remote"] = True
    cfg = config.parse(doc, check_paths=False)
    assert cfg.http.listen == "0.0.0.0:9108" and not cfg.http.is_loopback
    assert config.parse(with_("http.listen", "[::1]:9108"), check_paths=False).http.is_loopback


def test_paths_are_checked(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "kubeconfig"
    with pytest.raises(ConfigError, match=r"kubernetes.kubeconfig: .*no such file"):
        config.parse(with_("kubernetes.kubeconfig", str(missing)))
    with pytest.raises(ConfigError, match=r"nginx.servers_dir: .* is not a directory"):
        config.parse(with_("nginx.servers_dir", str(tmp_path / "nodir")))
    ok = config.parse(with_("nginx.servers_dir", str(tmp_path)))
    assert ok.nginx.servers_dir == tmp_path


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    path = tmp_path / "config.yaml"
    path.write_text("upstreams: [{name: a, node_port: 32001}]\nnginx: {servers_dir: out}\n")
    assert config.load(path).nginx.servers_dir == tmp_path / "out"


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        config.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("upstreams: [\n  - name: a\n  oops: {\n")
    with pytest.raises(ConfigError, match=r"bad.yaml line \d+"):
        config.load(bad)


def test_config_path_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(config.ENV_CONFIG, raising=False)
    assert config.config_path(None) == Path("/etc/lbsync/config.yaml")
    monkeypatch.setenv(config.ENV_CONFIG, "/tmp/env.yaml")
    assert config.config_path(None) == Path("/tmp/env.yaml")
    assert config.config_path("/tmp/flag.yaml") == Path("/tmp/flag.yaml")
