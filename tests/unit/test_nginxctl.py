"""Running the nginx commands alone: real processes, timeouts, and the one line that explains
a failure."""

from __future__ import annotations

import os

import pytest

from lbsync import nginxctl


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
    (("systemctl", "reload", "nginx.service"), None, "(see: journalctl -u nginx.service)"),
])
def test_the_line_that_explains_a_failure(argv: tuple[str, ...], code: int | None,
                                          line: str) -> None:
    result = nginxctl.run(argv, 5)
    assert not result.ok
    if code is not None:
        assert result.returncode == code
    assert line in result.first_error


def test_a_hung_command_is_a_failure_after_the_timeout() -> None:
    result = nginxctl.run(("sleep", "30"), 0.3)
    assert result.returncode == 124 and "timed out after 0.3s" in result.first_error


def test_children_never_see_lbsyncs_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("WATCHDOG_USEC", "1000")
    result = nginxctl.run(("sh", "-c", "echo ${NOTIFY_SOCKET:-none} ${WATCHDOG_USEC:-none}"), 5)
    assert result.output.strip() == "none none"
    assert os.environ["NOTIFY_SOCKET"] == "/run/systemd/notify"
