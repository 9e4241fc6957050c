"""`lbsync run` as a process: signals, systemd notifications, and `once` against it."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from lbsync_lab.nginx import PrivateNginx, free_port
from lbsync_lab.nodes import StandinPool
from lbsync_lab.rig import add_cluster, addr, child_env, hp, write_config
from lbsync_lab.sim import ApiServer, objects

ROOT = Path(__file__).resolve().parents[2]
ENV = child_env()


def wait_for(check, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def http_get(port: int, path: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return 0, {}


class Daemon:
    def __init__(self, proc: subprocess.Popen[str], port: int, config: Path) -> None:
        self.proc, self.port, self.config = proc, port, config

    def ready(self) -> bool:
        return http_get(self.port, "/readyz")[0] == 200


@pytest.fixture
def daemon(tmp_path: Path, api: ApiServer, nginx: PrivateNginx, standins: StandinPool
           ) -> Iterator[Daemon]:
    add_cluster(api, standins, 2)
    port = free_port()
    cfg = write_config(tmp_path / "config.yaml", api, nginx,
                       http={"listen": f"127.0.0.1:{port}"},
                       sync={"debounce": 0.1, "min_reload_interval": 0.1})
    notify = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.settimeout(0.1)
    env = {**ENV, "NOTIFY_SOCKET": str(notify), "WATCHDOG_USEC": "400000",
           "WATCHDOG_PID": ""}
    log = open(tmp_path / "daemon.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "lbsync", "-c", str(cfg), "run"],
                            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)
    d = Daemon(proc, port, cfg)
    d.notify_socket = sock  # type: ignore[attr-defined]
    try:
        wait_for(d.ready)
        yield d
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()
        log.close()


def notifications(sock: socket.socket, seconds: float) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            got.extend(sock.recv(4096).decode().splitlines())
    return got


def test_systemd_notifications(daemon: Daemon) -> None:
    got = notifications(daemon.notify_socket, 1.0)  # type: ignore[attr-defined]
    assert "READY=1" in got
    assert any(m.startswith("STATUS=in sync: k8s_cluster: 2 nodes") for m in got)
    assert got.count("WATCHDOG=1") >= 2  # every 0.2 s for WATCHDOG_USEC=0.4 s


def test_sigterm_exits_0_promptly_and_leaves_nginx_as_it_is(
    daemon: Daemon, nginx: PrivateNginx
) -> None:
    before = nginx.output.read_bytes()
    workers = nginx.settled_workers()
    start = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(10) == 0
    assert time.monotonic() - start < 2.5
    assert nginx.output.read_bytes() == before
    assert nginx.worker_pids() == workers


def test_sighup_with_a_bad_config_keeps_running_on_the_old_one(
    daemon: Daemon, api: ApiServer, standins: StandinPool
) -> None:
    good = daemon.config.read_text()
    daemon.config.write_text(good + "\nbogus_key: 1\n")
    daemon.proc.send_signal(signal.SIGHUP)

    def held_back() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{daemon.port}/metrics") as resp:
            return "lbsync_config_held_back 1.0" in resp.read().decode()

    wait_for(held_back)
    assert daemon.proc.poll() is None
    # Still working on the old config.
    api.put(objects.node("node-3", addr(3)))
    standins.add("node-3", addr(3), 32001)
    wait_for(lambda: len(http_get(daemon.port, "/status")[1]["upstreams"][0]["servers"]) == 3)
    # A good config again is taken on the next SIGHUP.
    daemon.config.write_text(good.replace("min_reload_interval: 0.1", "min_reload_interval: 0.2"))
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: not held_back())


def test_once_against_a_running_daemon_asks_it_to_sync(
    daemon: Daemon, api: ApiServer
) -> None:
    def lists() -> int:
        return sum(1 for method, path, _ in api.requests if method == "GET" and "watch" not in path)

    before = lists()
    result = subprocess.run([sys.executable, "-m", "lbsync", "-c", str(daemon.config), "once"],
                            env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "k8s_cluster: 2 nodes (+0 -0), unchanged\n"
    assert "synced by the running daemon" in result.stderr
    # The daemon answered from its watched state: `once` did not read the cluster itself.
    assert lists() == before


def test_second_daemon_on_the_same_file_refuses(daemon: Daemon) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lbsync", "-c", str(daemon.config), "run"],
        env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "locked by another lbsync process" in result.stderr


def test_status_command(daemon: Daemon) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lbsync", "-c", str(daemon.config), "status"],
        env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "ready: yes" in result.stdout
    assert re.search(r"last sync: .*\(\d+s ago\), (reloaded|unchanged) in \d+ ms", result.stdout)
    assert re.search(r"last reload: .*\(\d+s ago\)", result.stdout)
    assert hp(1) in result.stdout and "node-2" in result.stdout
    assert re.search(rf"node-1\s+yes\s+{re.escape(addr(1))}\s+eligible", result.stdout)


def status(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lbsync", "-c", str(config), "status"],
                          env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=30)


def test_status_never_shows_another_configs_daemon(daemon: Daemon, tmp_path: Path,
                                                   api: ApiServer, nginx: PrivateNginx) -> None:
    """Same http.listen, another output file: the daemon that answers is not this config's."""
    other_out = tmp_path / "other"
    other_out.mkdir()
    other = write_config(tmp_path / "other.yaml", api, nginx,
                         http={"listen": f"127.0.0.1:{daemon.port}"},
                         nginx={"servers_dir": str(other_out)})
    result = status(other)
    assert "runs another configuration" in result.stdout, result.stderr
    assert f"(servers {nginx.staged})" in result.stdout
    assert "computed from the cluster now" in result.stdout and "ready: yes" not in result.stdout


def test_status_without_a_daemon_does_not_claim_ready(
        tmp_path: Path, api: ApiServer, nginx: PrivateNginx, standins: StandinPool) -> None:
    add_cluster(api, standins, 1)
    api.put(objects.node("node-2", addr(2), ready=False))
    cfg = write_config(tmp_path / "c.yaml", api, nginx,
                       http={"listen": f"127.0.0.1:{free_port()}"})
    result = status(cfg)
    assert result.returncode == 0, result.stderr
    assert "no daemon answers on" in result.stdout and "ready:" not in result.stdout
    assert "plan: ok" in result.stdout
    assert ", 1 server:" in result.stdout  # not "1 servers"
    # A node that is out still shows the address the API gave it, and why it is out.
    assert re.search(rf"node-2\s+no\s+{re.escape(addr(2))}\s+not-ready \(Ready=(False|Unknown)\)",
                     result.stdout), result.stdout


def test_status_escapes_what_the_cluster_names(
        tmp_path: Path, api: ApiServer, nginx: PrivateNginx, standins: StandinPool) -> None:
    """ESC sequences in a node name must not reach the operator's terminal."""
    add_cluster(api, standins, 1)
    evil = objects.node("evil", addr(3))
    evil["metadata"]["name"] = "evil\x1b]0;owned\x07\x1b[2J"
    api.put(evil)
    cfg = write_config(tmp_path / "c.yaml", api, nginx,
                       http={"listen": f"127.0.0.1:{free_port()}"})
    result = status(cfg)
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "evil\\x1b]0;owned\\x07\\x1b[2J" in result.stdout
