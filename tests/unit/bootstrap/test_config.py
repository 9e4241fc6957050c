"""Config parsing and validation, as tables."""

from __future__ import annotations

from typing import Any

import pytest

from lbsync.bootstrap.config import BootstrapConfig, Route, parse_route
from lbsync.bootstrap.config import load as config_from_mapping
from lbsync.errors import ConfigError


@pytest.mark.parametrize(("spec", "want"), [
    ("worlds.com/world1 -> default/hello-world-1-svc:80",
     Route("worlds.com", "/world1", "hello-world-1-svc", 80, "default")),
    ("worlds.com/world2=apps/hello-2:8080",
     Route("worlds.com", "/world2", "hello-2", 8080, "apps")),
    ("Worlds.COM/ -> svc:80", Route("worlds.com", "/", "svc", 80, "default")),
])
def test_parse_route(spec: str, want: Route) -> None:
    assert parse_route(spec) == want


@pytest.mark.parametrize("spec", ["worlds.com -> svc:80", "worlds.com/x -> svc", "/x -> svc:80",
                                  "worlds.com/x svc:80", ""])
def test_parse_route_rejects(spec: str) -> None:
    with pytest.raises(ConfigError, match="route"):
        parse_route(spec)


@pytest.mark.parametrize(("route", "name"), [
    (Route("worlds.com", "/world1", "s", 80), "worlds-com-world1"),
    (Route("worlds.com", "/", "s", 80), "worlds-com"),
    (Route("a.b", "/x/y_z", "s", 80), "a-b-x-y-z"),
    (Route("a.b", "/x", "s", 80, name="explicit"), "explicit"),
])
def test_route_object_name(route: Route, name: str) -> None:
    assert route.object_name == name


def test_defaults_follow_the_tutorial() -> None:
    cfg = config_from_mapping(None)
    assert (cfg.kong.namespace, cfg.gateway.class_name, cfg.gateway.name) == (
        "kong", "kong-class", "kong-gateway")
    assert (cfg.kong.proxy_port, cfg.kong.node_port) == (80, 32001)
    assert cfg.gateway_api.version == "v1.0.0"
    assert cfg.gateway_api.crds_source.endswith("/v1.0.0/standard-install.yaml")
    assert cfg.routes == (Route("worlds.com", "/world1", "hello-world-1-svc", 80),)
    assert cfg.kong.deployments == ("kong-controller", "kong-gateway")


def test_full_file() -> None:
    cfg = config_from_mapping({
        "gateway_api": {"version": "v1.1.0", "crds_file": "/tmp/x.yaml"},
        "kong": {"namespace": "edge", "chart_version": "0.12.0", "node_port": 30080},
        "gateway": {"class_name": "k", "name": "g", "hostname": "worlds.com"},
        "routes": [{"host": "worlds.com", "path": "/a", "backend": "apps/a:80",
                    "strip_path": False},
                   "worlds.com/b -> apps/b:80"],
        "access": {"namespace": "lbsync", "service_account": "reader"},
        "wait_timeout": 60,
        "node_port_range": "30000-31000",
    })
    assert cfg.gateway_api.crds_source == "/tmp/x.yaml"
    assert (cfg.kong.namespace, cfg.kong.node_port, cfg.gateway.hostname) == (
        "edge", 30080, "worlds.com")
    assert cfg.routes[0].strip_path is False and cfg.routes[1].service == "b"
    assert cfg.node_port_range == (30000, 31000) and cfg.wait_timeout == 60.0
    assert cfg.kong.proxy_service == "kong-gateway-proxy"


@pytest.mark.parametrize(("data", "match"), [
    ({"kong": {"nodeport": 1}}, r"kong.nodeport: unknown key \(did you mean kong.node_port"),
    ({"bogus": 1}, "bogus: unknown key"),
    ({"kong": {"namespace": "Bad_Name"}}, "kong.namespace: 'Bad_Name' must match"),
    ({"kong": {"node_port": "x"}}, "kong.node_port: must be an integer"),
    # The old loader took the string "300" as a number: one set of rules now.
    ({"wait_timeout": "300"}, "wait_timeout: must be a number"),
    ({"kong": {"node_port": 70000}}, r"kong.node_port: 70000 is out of range 1\.\.65535"),
    ({"gateway_api": {"version": "1.0"}}, "gateway_api.version: '1.0' must match vMAJOR"),
    ({"gateway": {"hostname": "not a host"}}, "gateway.hostname"),
    ({"node_port_range": "32000-30000"}, "node_port_range: .*LOW-HIGH"),
    ({"routes": [{"host": "a.b"}]}, r"routes\[0\].backend: required"),
    ({"routes": ["a.b/x -> s:80", "a.b/x -> t:80"]}, "routes: two routes have the same name"),
    ({"wait_timeout": 0}, "wait_timeout: 0 is out of range"),
    ({"kong": {"chart_version": 1.10}}, "kong.chart_version: .*quote it"),
    ({"kong": {"release": 7}}, "kong.release: must be a string"),
    ([1, 2], "must be a mapping"),
])
def test_config_errors(data: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        config_from_mapping(data)


def test_dataclass_is_frozen() -> None:
    with pytest.raises(AttributeError):
        BootstrapConfig().kong.namespace = "x"  # type: ignore[misc]
