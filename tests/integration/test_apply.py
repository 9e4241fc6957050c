"""Applying servers files to a real nginx: write, publish and test, reload, confirm, and roll
back byte for byte."""

from __future__ import annotations

import os
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from lbsync_lab.nginx import PrivateNginx
from lbsync_lab.nodes import StandinPool
from lbsync_lab.rig import addr, hp

from lbsync.apply import Applied, ApplyError, Outcome, apply
from lbsync.config import NginxConfig


def apply_text(text: str, cfg: NginxConfig) -> Applied:
    """Apply one upstream's servers file, as a pass does."""
    return apply({cfg.servers_file("k8s_cluster"): text.encode()}, cfg, {})


def counting(tmp_path: Path, name: str, argv: tuple[str, ...]) -> tuple[tuple[str, ...], Path]:
    """A real command that logs each run, then runs argv: shows whether lbsync ran it."""
    log = tmp_path / f"{name}.log"
    script = tmp_path / f"{name}.sh"
    script.write_text(f'#!/bin/sh\necho run >> "{log}"\nexec "$@"\n')
    script.chmod(0o755)
    return (str(script), *argv), log


def runs(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def servers(*hostports: str) -> str:
    return "".join(f"server {s};\n" for s in hostports)


def nginx_config(nginx: PrivateNginx, tmp_path: Path, **kw: object) -> NginxConfig:
    fields: dict[str, object] = {
        "servers_dir": nginx.staged, "test_command": nginx.test_command,
        "reload_command": nginx.reload_command, "pid_file": nginx.pid_file,
        "state_dir": tmp_path / "state", "command_timeout": 5.0}
    return NginxConfig(**{**fields, **kw})  # type: ignore[arg-type]


@pytest.fixture
def cfg(nginx: PrivateNginx, tmp_path: Path) -> tuple[NginxConfig, Path, Path]:
    test, test_log = counting(tmp_path, "test", nginx.test_command)
    reload, reload_log = counting(tmp_path, "reload", nginx.reload_command)
    return nginx_config(nginx, tmp_path, test_command=test, reload_command=reload), \
        test_log, reload_log


def get(nginx: PrivateNginx) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{nginx.port}/", timeout=5) as resp:
        return str(resp.read().decode().split()[0])


def test_change_reloads_and_identical_bytes_do_nothing(
    nginx: PrivateNginx, standins: StandinPool, cfg: tuple[NginxConfig, Path, Path]
) -> None:
    ncfg, test_log, reload_log = cfg
    standins.add("n1", addr(1), 32001)
    workers = nginx.worker_pids()
    assert apply_text(servers(hp(1)), ncfg).outcome is Outcome.RELOADED
    workers = nginx.wait_reloaded(workers)
    assert get(nginx) == "n1"
    assert nginx.output.read_text() == servers(hp(1))  # published where nginx reads it
    assert (runs(test_log), runs(reload_log)) == (1, 1)

    inode = os.stat(nginx.staged_output).st_ino
    again = apply_text(servers(hp(1)), ncfg)
    assert again.outcome is Outcome.UNCHANGED
    assert (runs(test_log), runs(reload_log)) == (1, 1)  # no nginx -t, no reload
    assert os.stat(nginx.staged_output).st_ino == inode  # no write either
    assert nginx.worker_pids() == workers


def test_failed_test_restores_the_previous_file_and_nginx_keeps_serving(
    nginx: PrivateNginx, standins: StandinPool, cfg: tuple[NginxConfig, Path, Path]
) -> None:
    ncfg, _, reload_log = cfg
    standins.add("n1", addr(1), 32001)
    workers = nginx.worker_pids()
    apply_text(servers(hp(1)), ncfg)
    staged, live = nginx.staged_output.read_bytes(), nginx.output.read_bytes()
    workers = nginx.wait_reloaded(workers)
    # Another file breaks the configuration: lbsync's new file must not stay in place.
    (nginx.conf_d / "broken.conf").write_text("this is not nginx;\n")
    with pytest.raises(ApplyError) as err:
        apply_text(servers(hp(1), hp(2)), ncfg)
    assert err.value.stage == "test"
    assert "[emerg]" in str(err.value) and "broken.conf" in str(err.value)
    assert nginx.staged_output.read_bytes() == staged and nginx.output.read_bytes() == live
    assert runs(reload_log) == 1
    assert nginx.worker_pids() == workers
    assert get(nginx) == "n1"
    leftovers = [p.name for d in (nginx.staged, nginx.live) for p in d.iterdir()
                 if p.name.endswith(".tmp")]
    assert leftovers == []


def test_failed_reload_restores_the_previous_file(nginx: PrivateNginx, tmp_path: Path) -> None:
    ncfg = nginx_config(nginx, tmp_path)
    apply_text(servers(hp(1)), ncfg)
    before = nginx.staged_output.read_bytes()
    ncfg = nginx_config(nginx, tmp_path, reload_command=(
        "sh", "-c", "echo 'reload: no master running' >&2; exit 1"))
    with pytest.raises(ApplyError, match="nginx reload failed, previous file restored: "
                                         "reload: no master running") as err:
        apply_text(servers(hp(9)), ncfg)
    assert err.value.stage == "reload"
    assert nginx.staged_output.read_bytes() == before
    assert nginx.output.read_bytes() == before  # published again: live describes nginx


def test_a_reload_nginx_refused_is_not_reported_as_done(
    nginx: PrivateNginx, standins: StandinPool, tmp_path: Path
) -> None:
    """Another site cannot bind its port: `nginx -t` and `nginx -s reload` both exit 0, the
    master keeps the old workers and configuration. lbsync must call that a failure."""
    standins.add("n1", addr(1), 32001)
    ncfg = nginx_config(nginx, tmp_path)
    apply_text(servers(hp(1)), ncfg)
    workers = nginx.settled_workers()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (nginx.conf_d / "other.conf").write_text(
            f"server {{ listen 127.0.0.1:{port}; return 204; }}\n")
        with pytest.raises(ApplyError, match="started no new workers") as err:
            apply_text(servers(hp(1), hp(2)), ncfg)
    assert err.value.stage == "reload"
    assert nginx.worker_pids() == workers
    assert "bind() to 127.0.0.1" in nginx.error_log.read_text()
    # With nginx's error log readable, the refusal is known at once, in nginx's words.
    ncfg = nginx_config(nginx, tmp_path, error_log=nginx.error_log)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (nginx.conf_d / "other.conf").write_text(
            f"server {{ listen 127.0.0.1:{port}; return 204; }}\n")
        start = time.monotonic()
        with pytest.raises(ApplyError, match=rf"\[emerg\].*bind\(\) to 127.0.0.1:{port} "
                                             "failed"):
            apply_text(servers(hp(1), hp(3)), ncfg)
        assert time.monotonic() - start < 3  # not the 5 s command_timeout
    # Nothing recorded: the next pass tries again instead of calling it unchanged.
    (nginx.conf_d / "other.conf").unlink()
    assert apply_text(servers(hp(1), hp(2)), ncfg).outcome is Outcome.RELOADED


def test_first_write_with_failing_test_leaves_no_file(tmp_path: Path) -> None:
    ncfg = NginxConfig(servers_dir=tmp_path, test_command=("false",), reload_command=("true",),
                       state_dir=tmp_path / "state")
    with pytest.raises(ApplyError):
        apply_text(servers(f"{addr(1)}:30001"), ncfg)
    assert not ncfg.servers_file("k8s_cluster").exists()


def test_missing_command_is_a_clear_failure(tmp_path: Path) -> None:
    ncfg = NginxConfig(servers_dir=tmp_path, test_command=("/nonexistent/nginx", "-t"),
                       state_dir=tmp_path / "state")
    with pytest.raises(ApplyError, match="/nonexistent/nginx: command not found"):
        apply_text(servers(f"{addr(1)}:30001"), ncfg)


def test_bytes_on_disk_without_a_record_are_tested_and_reloaded(
    nginx: PrivateNginx, standins: StandinPool, cfg: tuple[NginxConfig, Path, Path]
) -> None:
    """A pass SIGKILLed during `nginx -t` left the new file on disk and no record: the next
    pass must not call that unchanged, since nginx never loaded it."""
    ncfg, test_log, reload_log = cfg
    standins.add("n1", addr(1), 32001)
    text = servers(hp(1))
    nginx.staged_output.write_text(text)  # what the killed pass wrote
    workers = nginx.worker_pids()
    assert apply_text(text, ncfg).outcome is Outcome.RELOADED
    assert (runs(test_log), runs(reload_log)) == (1, 1)
    nginx.wait_reloaded(workers)
    assert get(nginx) == "n1"
    assert apply_text(text, ncfg).outcome is Outcome.UNCHANGED  # recorded now


def test_a_failed_pass_leaves_no_record_that_matches(
    nginx: PrivateNginx, cfg: tuple[NginxConfig, Path, Path]
) -> None:
    ncfg, _, _ = cfg
    apply_text(servers(hp(1)), ncfg)
    (nginx.conf_d / "broken.conf").write_text("this is not nginx;\n")
    with pytest.raises(ApplyError):
        apply_text(servers(hp(2)), ncfg)
    (nginx.conf_d / "broken.conf").unlink()
    # The old file is back, but the record was dropped before the write: test and reload.
    assert apply_text(servers(hp(1)), ncfg).outcome is Outcome.RELOADED
