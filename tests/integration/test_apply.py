"""Applying a file to a real nginx: swap, test, reload, and roll back byte for byte."""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

import pytest
from lbsync_lab.nginx import PrivateNginx
from lbsync_lab.nodes import StandinPool
from lbsync_lab.rig import addr, hp

from lbsync.apply import Applied, ApplyError, Outcome, apply
from lbsync.config import NginxConfig


def apply_text(text: str, cfg: NginxConfig) -> Applied:
    """Apply one upstream file, as a pass does."""
    return apply({cfg.output: text.encode()}, cfg, {})


def counting(tmp_path: Path, name: str, argv: tuple[str, ...]) -> tuple[tuple[str, ...], Path]:
    """A real command that logs each run, then runs argv: shows whether lbsync ran it."""
    log = tmp_path / f"{name}.log"
    script = tmp_path / f"{name}.sh"
    script.write_text(f'#!/bin/sh\necho run >> "{log}"\nexec "$@"\n')
    script.chmod(0o755)
    return (str(script), *argv), log


def runs(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def upstream(*servers: str) -> str:
    lines = "".join(f"    server {s};\n" for s in servers)
    return f"upstream k8s_cluster {{\n{lines}}}\n"


@pytest.fixture
def cfg(nginx: PrivateNginx, tmp_path: Path) -> tuple[NginxConfig, Path, Path]:
    test, test_log = counting(tmp_path, "test", nginx.test_command)
    reload, reload_log = counting(tmp_path, "reload", nginx.reload_command)
    return (NginxConfig(output=nginx.output, test_command=test, reload_command=reload,
                        state_dir=tmp_path / "state"), test_log, reload_log)


def get(nginx: PrivateNginx) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{nginx.port}/", timeout=5) as resp:
        return str(resp.read().decode().split()[0])


def test_change_reloads_and_identical_bytes_do_nothing(
    nginx: PrivateNginx, standins: StandinPool, cfg: tuple[NginxConfig, Path, Path]
) -> None:
    ncfg, test_log, reload_log = cfg
    standins.add("n1", addr(1), 32001)
    workers = nginx.worker_pids()
    assert apply_text(upstream(hp(1)), ncfg).outcome is Outcome.RELOADED
    workers = nginx.wait_reloaded(workers)
    assert get(nginx) == "n1"
    assert (runs(test_log), runs(reload_log)) == (1, 1)

    inode = os.stat(nginx.output).st_ino
    again = apply_text(upstream(hp(1)), ncfg)
    assert again.outcome is Outcome.UNCHANGED
    assert (runs(test_log), runs(reload_log)) == (1, 1)  # no nginx -t, no reload
    assert os.stat(nginx.output).st_ino == inode  # no write either
    assert nginx.worker_pids() == workers


def test_failed_test_restores_the_previous_file_and_nginx_keeps_serving(
    nginx: PrivateNginx, standins: StandinPool, cfg: tuple[NginxConfig, Path, Path]
) -> None:
    ncfg, _, reload_log = cfg
    standins.add("n1", addr(1), 32001)
    workers = nginx.worker_pids()
    apply_text(upstream(hp(1)), ncfg)
    before = nginx.output.read_bytes()
    workers = nginx.wait_reloaded(workers)
    # Another file breaks the configuration: lbsync's new file must not stay in place.
    (nginx.conf_d / "broken.conf").write_text("this is not nginx;\n")
    with pytest.raises(ApplyError) as err:
        apply_text(upstream(hp(1), hp(2)), ncfg)
    assert err.value.stage == "test"
    assert "[emerg]" in str(err.value) and "broken.conf" in str(err.value)
    assert nginx.output.read_bytes() == before
    assert runs(reload_log) == 1
    assert nginx.worker_pids() == workers
    assert get(nginx) == "n1"
    leftovers = [p.name for p in nginx.conf_d.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_failed_reload_restores_the_previous_file(nginx: PrivateNginx, tmp_path: Path) -> None:
    nginx.output.write_text(upstream(hp(1)))
    before = nginx.output.read_bytes()
    ncfg = NginxConfig(output=nginx.output, test_command=nginx.test_command,
                       reload_command=("sh", "-c", "echo 'reload: no master running' >&2; exit 1"),
                       state_dir=tmp_path / "state")
    with pytest.raises(ApplyError, match="nginx reload failed, previous file restored: "
                                         "reload: no master running") as err:
        apply_text(upstream(hp(9)), ncfg)
    assert err.value.stage == "reload"
    assert nginx.output.read_bytes() == before


def test_first_write_with_failing_test_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "up.conf"
    ncfg = NginxConfig(output=out, test_command=("false",), reload_command=("true",),
                       state_dir=tmp_path / "state")
    with pytest.raises(ApplyError):
        apply_text(upstream(f"{addr(1)}:1"), ncfg)
    assert not out.exists()


def test_missing_command_is_a_clear_failure(tmp_path: Path) -> None:
    out = tmp_path / "up.conf"
    ncfg = NginxConfig(output=out, test_command=("/nonexistent/nginx", "-t"),
                       state_dir=tmp_path / "state")
    with pytest.raises(ApplyError, match="/nonexistent/nginx: command not found"):
        apply_text(upstream(f"{addr(1)}:1"), ncfg)


def test_bytes_on_disk_without_a_record_are_tested_and_reloaded(
    nginx: PrivateNginx, standins: StandinPool, cfg: tuple[NginxConfig, Path, Path]
) -> None:
    """A pass SIGKILLed during `nginx -t` left the new file on disk and no record: the next
    pass must not call that unchanged, since nginx never loaded it."""
    ncfg, test_log, reload_log = cfg
    standins.add("n1", addr(1), 32001)
    text = upstream(hp(1))
    nginx.output.write_text(text)  # what the killed pass wrote
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
    apply_text(upstream(hp(1)), ncfg)
    (nginx.conf_d / "broken.conf").write_text("this is not nginx;\n")
    with pytest.raises(ApplyError):
        apply_text(upstream(hp(2)), ncfg)
    (nginx.conf_d / "broken.conf").unlink()
    # The old file is back, but the record was dropped before the write: test and reload.
    assert apply_text(upstream(hp(1)), ncfg).outcome is Outcome.RELOADED
