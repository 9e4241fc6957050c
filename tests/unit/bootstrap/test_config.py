"""Config parsing and validation, as tables."""

from __future__ import annotations

from typing import Any

import pytest

from lbsync.bootstrap.config import (
    BootstrapConfig,
    ConfigError,
    Route,
    config_from_mapping,
    parse_route,
)


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
    assert (cfg.namespace, cfg.gateway_class, cfg.gateway) == ("kong", "kong-class", "kong-gateway")
    assert (cfg.proxy_port, cfg.node_port) == (80, 32001)
    assert cfg.gateway_api_version == "v1.0.0"
    assert cfg.crds_source.endswith("/v1.0.0/standard-install.yaml")
    assert cfg.routes == (Route("worlds.com", "/world1", "hello-world-1-svc", 80),)
    assert cfg.deployments == ("kong-controller", "kong-gateway")


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
    assert cfg.crds_source == "/tmp/x.yaml"
    assert (cfg.namespace, cfg.node_port, cfg.hostname) == ("edge", 30080, "worlds.com")
    assert cfg.routes[0].strip_path is False and cfg.routes[1].service == "b"
    assert cfg.node_port_range == (30000, 31000) and cfg.wait_timeout == 60.0
    assert cfg.proxy_service == "kong-gateway-proxy"


@pytest.mark.parametrize(("data", "match"), [
    ({"kong": {"nodeport": 1}}, "unknown keys"),
    ({"bogus": 1}, "unknown keys"),
    ({"kong": {"namespace": "Bad_Name"}}, "kong.namespace"),
    ({"kong": {"node_port": "x"}}, "expected a number"),
    ({"kong": {"node_port": 70000}}, "out of 1-65535"),
    ({"gateway_api": {"version": "1.0"}}, "vMAJOR"),
    ({"gateway": {"hostname": "not a host"}}, "hostname"),
    ({"node_port_range": "32000-30000"}, "LOW-HIGH"),
    ({"routes": [{"host": "a.b"}]}, "missing key 'backend'"),
    ({"routes": ["a.b/x -> s:80", "a.b/x -> t:80"]}, "duplicate"),
    ({"wait_timeout": 0}, "positive"),
    ({"kong": {"chart_version": 1.10}}, "quote it"),
    ([1, 2], "mapping"),
])
def test_config_errors(data: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        config_from_mapping(data)


def test_dataclass_is_frozen() -> None:
    with pytest.raises(AttributeError):
        BootstrapConfig().namespace = "x"  # type: ignore[misc]
