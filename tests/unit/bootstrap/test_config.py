"""Config parsing and validation, as tables."""

from __future__ import annotations

from typing import Any

import pytest

from lbsync.bootstrap.config import BootstrapConfig, Route, hostnames_intersect, parse_route
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
    assert (cfg.kong.chart, cfg.kong.chart_version) == ("ingress", "0.24.0")
    assert (cfg.kong.admin_http, cfg.kong.manager) == (False, False)
    assert (cfg.access.credential, cfg.access.token_seconds) == ("token-request", 30 * 86400)


@pytest.mark.parametrize(("text", "seconds"), [
    ("30d", 2592000), ("12h", 43200), ("90m", 5400), ("600s", 600), ("3600", 3600),
    (7200, 7200)])
def test_token_lifetime(text: Any, seconds: int) -> None:
    cfg = config_from_mapping({"access": {"token_lifetime": text}})
    assert cfg.access.token_seconds == seconds


@pytest.mark.parametrize(("a", "b", "meet"), [
    ("worlds.com", "worlds.com", True), ("worlds.com", "other.com", False),
    ("*.worlds.com", "a.worlds.com", True), ("*.worlds.com", "a.b.worlds.com", True),
    ("*.worlds.com", "worlds.com", False), ("a.worlds.com", "*.worlds.com", True),
    ("*.worlds.com", "*.a.worlds.com", True), ("*.a.com", "*.b.com", False),
])
def test_hostnames_intersect(a: str, b: str, meet: bool) -> None:
    assert hostnames_intersect(a, b) is meet and hostnames_intersect(b, a) is meet


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
    ({"kong": {"repo_name": "kong"}}, "kong.repo_name: no longer used: helm fetches"),
    ({"gateway": {"hostname": "*.worlds.com"}, "routes": ["other.org/ -> s:80"]},
     "routes: a route's host does not match gateway.hostname"),
    ({"routes": [f"h{i}.org/ -> s:80" for i in range(65)]}, "more than 64 different hosts"),
    ({"access": {"credential": "forever"}}, "access.credential"),
    ({"access": {"token_lifetime": "5m"}}, "must be between 10m and 366d"),
    ({"access": {"token_lifetime": "400d"}}, "must be between 10m and 366d"),
    ({"access": {"token_lifetime": "a week"}}, "expected a duration such as 30d"),
    ({"access": {"token_lifetime": True}}, "expected a duration"),
    ([1, 2], "must be a mapping"),
])
def test_config_errors(data: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        config_from_mapping(data)


def test_dataclass_is_frozen() -> None:
    with pytest.raises(AttributeError):
        BootstrapConfig().kong.namespace = "x"  # type: ignore[misc]
