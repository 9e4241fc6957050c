"""A private nginx in its own prefix: config, pid, logs and temp paths all inside one directory.

It serves the gateway's site (a `server` proxying to upstream `k8s_cluster`, as on the real
gateway host) and includes the directory lbsync writes into, so tests and the demo exercise the
real `nginx -t` and reload.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

# Until lbsync writes the real file, `proxy_pass http://k8s_cluster` needs the upstream to
# exist; a server marked down makes it answer 502 instead of failing to start.
PLACEHOLDER = "upstream k8s_cluster {\n    server 127.0.0.1:9 down;\n}\n"


_UPSTREAM = re.compile(r"^\s*upstream\s+([A-Za-z0-9_]+)\s*\{(.*?)\}", re.S | re.M)
_SERVER = re.compile(r"^\s*server\s+(\S+?)[\s;]", re.M)


def servers_in(text: str) -> dict[str, set[str]]:
    """The `server` entries of each upstream block, as nginx would read them (lab checks)."""
    return {m.group(1): set(_SERVER.findall(m.group(2))) for m in _UPSTREAM.finditer(text)}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class NginxStartError(RuntimeError):
    """nginx refused to start; the message is its first [emerg] line."""


def _alive(pid: int) -> bool:
    """Running, not a zombie: outside systemd, PID 1 may take a while to reap the master."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class PrivateNginx:
    def __init__(self, prefix: Path, port: int | None = None, upstream: str = "k8s_cluster"):
        self.prefix = prefix.resolve()
        self.port = port or free_port()
        self.upstream = upstream
        self.conf = self.prefix / "nginx.conf"
        self.conf_d = self.prefix / "conf.d"
        self.output = self.conf_d / "lbsync-upstreams.conf"
        self.error_log = self.prefix / "logs" / "error.log"
        self.pid_file = self.prefix / "nginx.pid"

    def servers(self) -> set[str]:
        """host:port of every server in the output file's upstream (empty if unreadable)."""
        try:
            text = self.output.read_text()
        except OSError:
            return set()
        return servers_in(text).get(self.upstream, set())

    def argv(self, *extra: str) -> tuple[str, ...]:
        return (NGINX, "-p", str(self.prefix), "-c", str(self.conf), "-e", str(self.error_log),
                *extra)

    @property
    def test_command(self) -> tuple[str, ...]:
        return self.argv("-t", "-q")

    @property
    def reload_command(self) -> tuple[str, ...]:
        return self.argv("-s", "reload")

    def write_config(self) -> None:
        for sub in ("conf.d", "logs", "temp"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
        if not self.output.exists():
            self.output.write_text(PLACEHOLDER)
        temp = self.prefix / "temp"
        self.conf.write_text(f"""\
worker_processes 1;
pid {self.pid_file};
error_log {self.error_log} info;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {temp}/client;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {self.conf_d}/*.conf;
    server {{
        listen 127.0.0.1:{self.port};
        server_name worlds.com;
        location / {{
            proxy_pass http://{self.upstream};
            proxy_next_upstream error timeout;
            proxy_connect_timeout 1s;
            proxy_read_timeout 5s;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
""")

    def start(self, timeout: float = 10.0) -> None:
        self.write_config()
        started = subprocess.run(self.argv(), capture_output=True, text=True, check=False)
        if started.returncode != 0:
            lines = [line for line in started.stderr.splitlines() if "[emerg]" in line]
            raise NginxStartError((lines or started.stderr.splitlines() or ["exit status "
                                   f"{started.returncode}"])[0].strip())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.master_pid() and len(self.worker_pids()) >= 1 and self._accepts():
                return
            time.sleep(0.02)
        raise RuntimeError(f"nginx did not start; see {self.error_log}")

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def master_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def worker_pids(self) -> set[int]:
        """The current worker processes (old workers still draining are excluded)."""
        master = self.master_pid()
        if master is None:
            return set()
        pids = set()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                stat = (proc / "stat").read_text()
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == master and b"worker process" in cmdline and b"shutting down" not in cmdline:
                pids.add(int(proc.name))
        return pids

    def wait_reloaded(self, old_workers: set[int], timeout: float = 10.0) -> set[int]:
        """Wait until the master has replaced every worker in `old_workers`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = self.worker_pids()
            # One worker process is configured: more means the old one is still on its way out.
            if len(now) == 1 and not (now & old_workers):
                return now
            time.sleep(0.01)
        raise TimeoutError("nginx workers were not replaced")

    def settled_workers(self, timeout: float = 10.0) -> set[int]:
        """The worker once no reload is in progress (exactly the one configured worker)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = self.worker_pids()
            if len(now) == 1:
                return now
            time.sleep(0.01)
        raise TimeoutError("nginx workers did not settle")

    def stop(self, timeout: float = 10.0) -> None:
        pid = self.master_pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.02)

    def __enter__(self) -> PrivateNginx:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
