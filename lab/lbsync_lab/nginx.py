"""A private nginx in its own prefix: config, pid, logs and temp paths all inside one directory.

It runs the site configuration the project recommends (`config/nginx/lbsync.conf`, root's
upstream blocks that include the published servers files, and `config/nginx/worlds.com.conf`,
the public site), with only the paths and the listen address changed for the prefix; and it
lays out lbsync's side as on a gateway: lbsync writes into `staged/`, the publisher
(`python -m lbsync.publish`, root's step on a gateway) checks and copies into `live/`, which
nginx includes. So tests and the demo exercise the real `nginx -t`, reload and publisher.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from lbsync import nginxctl

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SITE = Path(__file__).resolve().parents[2] / "config" / "nginx"
LIVE = "/etc/nginx/lbsync/"

# Until lbsync publishes the real file, the upstream needs a server: one marked down makes
# the site answer 502 instead of nginx failing to start.
PLACEHOLDER = "server 127.0.0.1:9 down;\n"
_SERVER = re.compile(r"^\s*server\s+(\S+?)[\s;]", re.M)


def servers_in(text: str) -> set[str]:
    """The host:port of each `server` line of a servers file (lab checks)."""
    return set(_SERVER.findall(text))


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


STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")
STREAM_PLACEHOLDER = "# no LoadBalancer Services yet\n"


class PrivateNginx:
    def __init__(self, prefix: Path, port: int | None = None, upstream: str = "k8s_cluster",
                 stream_listen: tuple[str, ...] = ("127.0.0.1",)):
        self.prefix = prefix.resolve()
        # Addresses root lets LoadBalancer listeners use (the publisher's --stream-listen).
        self.stream_listen = stream_listen
        self.port = port or free_port()
        self.upstream = upstream
        self.conf = self.prefix / "nginx.conf"
        self.conf_d = self.prefix / "conf.d"
        self.staged = self.prefix / "staged"  # lbsync's nginx.servers_dir
        self.live = self.prefix / "live"  # root's, on a gateway: only the publisher writes it
        self.error_log = self.prefix / "logs" / "error.log"
        self.pid_file = self.prefix / "nginx.pid"

    @property
    def output(self) -> Path:
        """The servers file nginx includes for the upstream (what it runs, once reloaded)."""
        return self.live / f"{self.upstream}.servers"

    @property
    def staged_output(self) -> Path:
        """The servers file lbsync writes for the upstream."""
        return self.staged / f"{self.upstream}.servers"

    def servers(self) -> set[str]:
        """host:port of every server nginx's file lists (empty if unreadable)."""
        try:
            return servers_in(self.output.read_text())
        except OSError:
            return set()

    def argv(self, *extra: str) -> tuple[str, ...]:
        return (NGINX, "-p", str(self.prefix), "-c", str(self.conf), "-e", str(self.error_log),
                *extra)

    @property
    def nginx_test(self) -> tuple[str, ...]:
        return self.argv("-t", "-q")

    @property
    def test_command(self) -> tuple[str, ...]:
        """lbsync's test command: publish the staged files, as root does on a gateway
        (loopback allowed: the lab's nodes live there), then `nginx -t`."""
        listen = [arg for address in self.stream_listen
                  for arg in ("--stream-listen", address)]
        return (sys.executable, "-m", "lbsync.publish", str(self.staged), str(self.live),
                "--allow-loopback", *listen, "--reserved-ports", f"22,{self.port}", "--",
                *self.nginx_test)

    @property
    def stream_output(self) -> Path:
        return self.live / "loadbalancer.stream"

    @property
    def reload_command(self) -> tuple[str, ...]:
        return self.argv("-s", "reload")

    def site(self) -> str:
        """The project's recommended site configuration, with this prefix's paths and port."""
        text = ""
        for name in ("lbsync.conf", "worlds.com.conf"):
            text += (SITE / name).read_text()
        text = text.replace(LIVE, f"{self.live}/")
        text = re.sub(r"^\s*listen \[::\]:80;\n", "", text, flags=re.M)
        return re.sub(r"listen 80;", f"listen 127.0.0.1:{self.port};", text)

    def write_config(self) -> None:
        for sub in ("conf.d", "logs", "temp", "staged", "live"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.live, 0o755)
        if not self.output.exists():
            self.output.write_text(PLACEHOLDER)
        if not self.stream_output.exists():
            self.stream_output.write_text(STREAM_PLACEHOLDER)
        (self.conf_d / "site.conf").write_text(self.site())
        temp = self.prefix / "temp"
        # Debian builds the stream module as a module (libnginx-mod-stream).
        stream = (f"stream {{ include {self.stream_output}; }}\n"
                  if STREAM_MODULE.exists() else "")
        load = f"load_module {STREAM_MODULE};\n" if stream else ""
        self.conf.write_text(f"""\
{load}worker_processes 1;
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
}}
{stream}""")

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
        return nginxctl.master_pid(self.pid_file)

    def worker_pids(self) -> set[int]:
        """The current worker processes (old workers still draining are excluded)."""
        master = self.master_pid()
        return set() if master is None else nginxctl.workers(master)

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
