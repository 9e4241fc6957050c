"""lbsync as the cluster's load balancer, end to end: the emulator, `lbsync run` as processes,
a real nginx with http and stream contexts, stand-in nodes (HTTP and raw TCP). A LoadBalancer
Service appears, gets its ingress, serves traffic on its port, changes port, stops being
served (status cleared, listener gone); conflicts and reserved ports are Events; two
gateways share one Lease: one writer, and a failover within the lease duration."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lbsync_lab.inprocess import eventually
from lbsync_lab.nginx import PrivateNginx, free_port
from lbsync_lab.nodes import EchoNode, StandinPool
from lbsync_lab.rig import addr, child_env, write_config
from lbsync_lab.sim import ApiServer, objects

CLASS = "lbsync.io/nginx"
HOSTNAME = "lb.lab.test"
LEASE = {"lease_duration": 3.0, "renew_deadline": 2.0, "retry_period": 0.3}


def lb_service(name: str, ports: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    svc = objects.service("apps", name, ports=ports)
    svc["spec"].update({"type": "LoadBalancer", "loadBalancerClass": CLASS, **spec})
    return svc


def tcp_port(protocol: str, port: int, node_port: int) -> dict[str, Any]:
    return {"name": f"p{port}", "protocol": protocol, "port": port, "nodePort": node_port,
            "targetPort": 8080}


def free_on(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


class Gateway:
    """One gateway host: its nginx, its address, `lbsync run` as a process."""

    def __init__(self, tmp: Path, api: ApiServer, address: str, name: str, *,
                 packaged: bool = False) -> None:
        self.address, self.name = address, name
        self.nginx = PrivateNginx(tmp / name / "nginx", stream_listen=(address,))
        self.nginx.start()
        self.http_port = free_port()
        # As the packaged units are set up: lbsync can neither see nginx's processes nor read
        # its error log; the reload is root's helper (lbsync-nginx-reload.service's command).
        packaged_nginx = {"pid_file": None, "error_log": None, "reload_command": [
            sys.executable, "-m", "lbsync.nginxctl", "reload", str(self.nginx.pid_file), "--",
            *self.nginx.reload_command]}
        self.config = write_config(
            tmp / name / "config.yaml", api, self.nginx, upstreams=[],
            **({"nginx": packaged_nginx} if packaged else {}),
            http={"listen": f"127.0.0.1:{self.http_port}"},
            sync={"debounce": 0.1, "min_reload_interval": 0.1},
            nodes={"probe": {"interval": 0.3, "timeout": 0.2}},
            loadbalancer={"enabled": True, "addresses": [address], "hostname": HOSTNAME,
                          "reserved_ports": [22, self.nginx.port],
                          "leader_election": {**LEASE, "identity": name}})
        self.log = (tmp / name / "lbsync.log").open("w")
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "lbsync", "-c", str(self.config),
                                      "run"], env=child_env(), stdout=self.log,
                                     stderr=subprocess.STDOUT, text=True)

    def metric(self, name: str) -> float:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics",
                                        timeout=2) as resp:
                text = resp.read().decode()
        except OSError:
            return -1.0
        values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                  if line.startswith((name + " ", name + "{")) or (line.startswith(name)
                  and "{" in name)]
        return sum(values) if values else -1.0

    def leading(self) -> bool:
        return self.metric("lbsync_leader") == 1.0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.nginx.stop()
        self.log.close()


@pytest.fixture
def gateways(tmp_path: Path, api: ApiServer) -> Iterator[Callable[..., Gateway]]:
    started: list[Gateway] = []

    def start(name: str, i: int, packaged: bool = False) -> Gateway:
        gw = Gateway(tmp_path, api, addr(i), name, packaged=packaged)
        started.append(gw)
        gw.start()
        return gw

    yield start
    for gw in started:
        gw.stop()


def one_node(api: ApiServer, standins: StandinPool) -> None:
    """The apps and kong namespaces, and node-1 with a stand-in on node port 32080."""
    for ns in ("apps", "kong"):
        api.put(objects.namespace(ns))
    api.put(objects.node("node-1", addr(1)))
    standins.add("node-1", addr(1), 32080)


def ingress(api: ApiServer, name: str) -> list[dict[str, str]]:
    svc = api.get("Service", name, "apps") or {}
    return list(((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or [])


def http_get(address: str, port: int) -> str:
    with urllib.request.urlopen(f"http://{address}:{port}/", timeout=3) as resp:
        return resp.read().decode().split()[0]


def echo(address: str, port: int) -> bytes:
    with socket.create_connection((address, port), timeout=3) as s:
        s.sendall(b"hello")
        return s.recv(100)


def refused(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=1).close()
    except OSError:
        return True
    return False


def events(api: ApiServer, reason: str) -> list[dict[str, Any]]:
    return [e for e in api.list("Event", "apps") if e.get("reason") == reason]


def test_a_loadbalancer_service_end_to_end(
        api: ApiServer, standins: StandinPool, gateways: Callable[[str, int], Gateway]) -> None:
    for ns in ("apps", "kong"):
        api.put(objects.namespace(ns))
    for i in (1, 2):
        api.put(objects.node(f"node-{i}", addr(i)))
        standins.add(f"node-{i}", addr(i), 32080)
    echoes = [EchoNode(f"node-{i}", addr(i), 32081) for i in (1, 2)]
    try:
        gw = gateways("gw-a", 30)
        web_port, tls_port = free_on(gw.address), free_on(gw.address)
        api.put(lb_service("web", [tcp_port("TCP", web_port, 32080)]))
        api.put(lb_service("tls", [tcp_port("TCP", tls_port, 32081)]))
        # It gets the gateway's ingress (written by the leader, server-side apply).
        eventually(lambda: ingress(api, "web") == [{"hostname": HOSTNAME}], 20, "web ingress")
        eventually(lambda: ingress(api, "tls") == [{"hostname": HOSTNAME}], 20, "tls ingress")
        # HTTP through an nginx stream listener, and raw TCP passed through untouched.
        eventually(lambda: not refused(gw.address, web_port), 10, "the web listener")
        assert http_get(gw.address, web_port) in {"node-1", "node-2"}
        assert echo(gw.address, tls_port).endswith(b" hello")

        # The Service's port changes: the listener moves.
        new_port = free_on(gw.address)
        api.put(lb_service("web", [tcp_port("TCP", new_port, 32080)]))
        eventually(lambda: not refused(gw.address, new_port), 10, "the moved listener")
        eventually(lambda: refused(gw.address, web_port), 10, "the old listener gone")

        # Another Service wants the same port: the older one keeps it; an Event says why.
        # creationTimestamp counts whole seconds (a tie goes by namespace/name, and "copycat"
        # sorts first): create it in a later second than "web".
        time.sleep(1.0 - time.time() % 1.0 + 0.01)
        api.put(lb_service("copycat", [tcp_port("TCP", new_port, 32080)]))
        eventually(lambda: events(api, "PortConflict"), 10, "a PortConflict Event")
        assert ingress(api, "copycat") == [] and http_get(gw.address, new_port)
        api.put(lb_service("ssh", [tcp_port("TCP", 22, 32080)]))
        eventually(lambda: events(api, "PortReserved"), 10, "a PortReserved Event")

        # It stops being a LoadBalancer: status cleared, listener gone.
        plain = lb_service("tls", [tcp_port("TCP", tls_port, 32081)], type="NodePort")
        del plain["spec"]["loadBalancerClass"]
        api.put(plain)
        eventually(lambda: ingress(api, "tls") == [], 10, "tls ingress cleared")
        eventually(lambda: refused(gw.address, tls_port), 10, "the tls listener gone")
        assert gw.metric('lbsync_loadbalancer_status_writes_total{result="written"}') >= 3
    finally:
        for e in echoes:
            e.stop()


def test_two_gateways_one_writer_and_a_failover(
        api: ApiServer, standins: StandinPool, gateways: Callable[[str, int], Gateway],
        tmp_path: Path) -> None:
    one_node(api, standins)
    a = gateways("gw-a", 30)
    eventually(a.leading, 20, "gw-a leading")
    b = gateways("gw-b", 29)
    eventually(lambda: b.metric("lbsync_leader") == 0.0, 20, "gw-b following")
    port = free_on(a.address)
    api.put(lb_service("web", [tcp_port("TCP", port, 32080)]))
    eventually(lambda: ingress(api, "web") == [{"hostname": HOSTNAME}], 20)
    # Both keep NGINX in step; only the leader wrote.
    eventually(lambda: not refused(b.address, port), 10, "gw-b's listener")
    # The API shows the status a moment before gw-a has read the PATCH's answer and counted it.
    eventually(lambda: a.metric('lbsync_loadbalancer_status_writes_total{result="written"}')
               >= 1, 5, "gw-a counting its write")
    assert b.metric('lbsync_loadbalancer_status_writes_total{result="written"}') == 0
    lease = api.get("Lease", "lbsync-loadbalancer", "kong")
    assert lease is not None and lease["spec"]["holderIdentity"] == "gw-a"

    # The writer dies without a word (SIGKILL): gw-b takes over within the lease duration.
    assert a.proc is not None
    a.proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    eventually(b.leading, 15, "gw-b leading")
    took = time.monotonic() - killed
    assert took < LEASE["lease_duration"] + 2 * LEASE["retry_period"] + 1.5, took
    api.put(lb_service("new", [tcp_port("TCP", free_on(b.address), 32080)]))
    eventually(lambda: ingress(api, "new") == [{"hostname": HOSTNAME}], 10, "gw-b writes")
    (tmp_path / "failover.json").write_text(json.dumps({"failover_seconds": took}))


def test_a_port_another_process_holds_does_not_block_the_other_services(
        api: ApiServer, standins: StandinPool, gateways: Callable[[str, int], Gateway]) -> None:
    """nginx -t passes, the reload does not take (bind fails): lbsync leaves the new port out
    and every other Service's listener goes through."""
    one_node(api, standins)
    gw = gateways("gw-a", 30)
    eventually(gw.leading, 20, "gw-a leading")
    with socket.socket() as squatter:
        squatter.bind((gw.address, 0))
        squatter.listen()
        held = squatter.getsockname()[1]
        ok_port = free_on(gw.address)
        api.put(lb_service("blocked", [tcp_port("TCP", held, 32080)]))
        api.put(lb_service("fine", [tcp_port("TCP", ok_port, 32080)]))
        eventually(lambda: events(api, "PortUnavailable"), 20, "a PortUnavailable Event")
        eventually(lambda: not refused(gw.address, ok_port), 20, "the fine listener")
        assert http_get(gw.address, ok_port) == "node-1"
        eventually(lambda: ingress(api, "fine") == [{"hostname": HOSTNAME}], 10)
        assert ingress(api, "blocked") == []


def test_packaged_a_held_port_is_found_without_nginx_s_error_log(
        api: ApiServer, standins: StandinPool, gateways: Callable[..., Gateway]) -> None:
    """The packaged units: root's reload helper cannot tell lbsync which port nginx could not
    bind. lbsync finds who holds one of the pass's new ports (/proc/net) and leaves out that
    one only: the Service's other new port is served at once, not 5 minutes later."""
    one_node(api, standins)
    gw = gateways("gw-p", 31, packaged=True)
    eventually(gw.leading, 20, "gw-p leading")
    with socket.socket() as squatter:
        squatter.bind((gw.address, 0))
        squatter.listen()
        held = squatter.getsockname()[1]
        ok_port = free_on(gw.address)
        # One Service, both ports: both are new in the same pass, whatever the timing.
        api.put(lb_service("both", [tcp_port("TCP", held, 32080),
                                    tcp_port("TCP", ok_port, 32080)]))
        # The helper waits 10 s for new workers before it gives up (HELPER_CONFIRM_WAIT).
        eventually(lambda: events(api, "PortUnavailable"), 40, "a PortUnavailable Event")
        eventually(lambda: not refused(gw.address, ok_port), 20, "the other port")
        assert http_get(gw.address, ok_port) == "node-1"
        messages = [e.get("message", "") for e in events(api, "PortUnavailable")]
        assert all(f"port {held}/TCP" in m for m in messages), messages
