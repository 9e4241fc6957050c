"""The daemon in this process, for tests: `lbsync run`'s Daemon and its HTTP endpoints on a
free port, with helpers to read what it says (endpoints, metrics parsed by Prometheus' own
text parser) and to wait for convergence."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from lbsync import config
from lbsync.daemon import Daemon
from lbsync.httpapi import HttpApi
from lbsync.notify import Notifier
from lbsync_lab.nginx import PrivateNginx


def eventually(check: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.02)


class Running:
    """A daemon running in a thread, with its HTTP API on a free port."""

    def __init__(self, daemon: Daemon, http: HttpApi, nginx: PrivateNginx | None,
                 thread: threading.Thread) -> None:
        self.daemon, self.http, self.nginx, self.thread = daemon, http, nginx, thread

    @classmethod
    def start(cls, path: Path, nginx: PrivateNginx | None = None,
              notifier: Notifier | None = None) -> Running:
        cfg = config.load(path)
        daemon = Daemon(cfg, config_path=path, registry=CollectorRegistry(), notifier=notifier)
        http = HttpApi(daemon, cfg.http.host, cfg.http.port)
        http.start()
        ready = threading.Event()
        thread = threading.Thread(
            target=daemon.run, kwargs={"install_signals": False, "on_started": ready.set},
            daemon=True)
        thread.start()
        assert ready.wait(10), "the daemon did not start"
        return cls(daemon, http, nginx, thread)

    def stop(self) -> None:
        self.daemon.request_stop()
        self.thread.join(5)
        self.http.stop()
        assert not self.thread.is_alive(), "the daemon did not stop"

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http.port}{path}",
                                        timeout=10) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample, parsed by the Prometheus text parser."""
        status, body = self.get("/metrics")
        assert status == 200
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples
        }

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics().get((name, tuple(sorted(labels.items()))), 0.0)

    def servers(self) -> set[str]:
        assert self.nginx is not None
        return self.nginx.servers()

    def recorded(self) -> set[str]:
        """The servers of the daemon's last successful pass (recorded after the reload)."""
        ups = self.daemon.status()["upstreams"]
        return {s["address"] for s in ups[0]["servers"]} if ups else set()

    def converged(self, *hostports: str, timeout: float = 15.0) -> None:
        """The file on disk has exactly these servers and the daemon has recorded the pass."""
        eventually(lambda: self.servers() == set(hostports) == self.recorded(), timeout,
                   f"servers {sorted(hostports)}, have {sorted(self.servers())}")


