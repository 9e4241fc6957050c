"""Running the nginx commands alone: real processes, timeouts, and the one line that explains
a failure."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from lbsync import config, nginxctl

ROOT = Path(__file__).resolve().parents[2]


def test_success_and_output() -> None:
    result = nginxctl.run(("sh", "-c", "echo hello; echo err >&2"), 5)
    assert result.ok and result.output.splitlines() == ["hello", "err"]


@pytest.mark.parametrize(("argv", "code", "line"), [
    (("/nonexistent/nginx", "-t"), 127, "/nonexistent/nginx: command not found"),
    (("sh", "-c", "exit 3"), 3, "exit status 3"),
    (("sh", "-c", "echo 'nginx: [warn] x'; echo 'nginx: [emerg] bad thing in /x:1'; exit 1"),
     1, "nginx: [emerg] bad thing in /x:1"),
    (("sh", "-c", "echo first; echo 'nginx: [alert] worse'; exit 1"), 1,
     "nginx: [alert] worse"),
])
def test_the_line_that_explains_a_failure(argv: tuple[str, ...], code: int | None,
                                          line: str) -> None:
    result = nginxctl.run(argv, 5)
    assert not result.ok
    if code is not None:
        assert result.returncode == code
    assert line in result.first_error


def test_a_failed_systemctl_points_at_the_units_journal(tmp_path: Path) -> None:
    """systemctl's own words carry no reason: those are in the journal. A script stands in for
    systemctl because the real one answers differently without systemd as PID 1 (in a chroot it
    says "Running in chroot, ignoring request" and exits 0)."""
    systemctl = tmp_path / "systemctl"
    systemctl.write_text("#!/bin/sh\necho 'Job for nginx.service failed because the control "
                         "process exited with error code.' >&2\nexit 1\n")
    systemctl.chmod(0o755)
    result = nginxctl.run((str(systemctl), "reload", "nginx.service"), 5)
    assert result.returncode == 1
    assert result.first_error == ("Job for nginx.service failed because the control process "
                                  "exited with error code. (see: journalctl -u nginx.service)")


def test_the_root_helpers_waits_end_before_its_unit_and_lbsync_give_up() -> None:
    """Else a refused reload reaches the operator as a systemd timeout, not as its reason."""
    unit = (ROOT / "systemd" / "lbsync-nginx-reload.service").read_text()
    found = re.search(r"^TimeoutStartSec=(\d+)s$", unit, re.M)
    assert found, "lbsync-nginx-reload.service: no TimeoutStartSec"
    unit_timeout = float(found[1])
    helper = nginxctl.HELPER_COMMAND_WAIT + nginxctl.HELPER_CONFIRM_WAIT
    assert helper + 2 < unit_timeout < config.NginxConfig().command_timeout


def test_a_hung_command_is_a_failure_after_the_timeout() -> None:
    result = nginxctl.run(("sleep", "30"), 0.3)
    assert result.returncode == 124 and "timed out after 0.3s" in result.first_error


def test_children_never_see_lbsyncs_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("WATCHDOG_USEC", "1000")
    result = nginxctl.run(("sh", "-c", "echo ${NOTIFY_SOCKET:-none} ${WATCHDOG_USEC:-none}"), 5)
    assert result.output.strip() == "none none"
    assert os.environ["NOTIFY_SOCKET"] == "/run/systemd/notify"
