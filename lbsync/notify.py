"""systemd notification (sd_notify) without a dependency: READY=1, STATUS=, WATCHDOG=1.

Does nothing when NOTIFY_SOCKET is unset, so the daemon runs the same outside systemd. A
STATUS= text can carry strings from the cluster (an error naming a Service's type): it is made
one printable line, bounded, so that it can never add a field such as WATCHDOG=trigger or
STOPPING=1 to the datagram.
"""

from __future__ import annotations

import os
import socket

from lbsync.text import printable

MAX_STATUS = 200


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        # An address starting with "@" is in the abstract namespace.
        self.address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        enabled = usec.isdigit() and (not pid or pid == str(os.getpid()))
        # Ping at half the interval, as sd_watchdog_enabled(3) advises.
        self.watchdog_interval = int(usec) / 2e6 if enabled else None

    def send(self, *fields: str) -> bool:
        if not self.address:
            return False
        try:
            # One field per line: a field's own newline would start another field.
            line = "\n".join(printable(f, MAX_STATUS + 16) for f in fields)
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(line.encode(), self.address)
        except OSError:
            return False
        return True

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={printable(status, MAX_STATUS)}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={printable(status, MAX_STATUS)}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    def reloading(self) -> None:
        self.send("RELOADING=1", "STATUS=reloading configuration")
