"""Client-side helpers for tests that drive the emulator through a real client: adding many
nodes at once, and reading raw (`_preload_content=False`) list and watch responses."""

from __future__ import annotations

import json
from typing import Any

from lbsync_lab.sim import ApiServer, objects


def add_nodes(api: ApiServer, n: int, prefix: str = "node") -> list[str]:
    names = []
    for i in range(n):
        name = f"{prefix}-{i:03d}"
        api.put(objects.node(name, objects.node_address(i, n)))
        names.append(name)
    return names


def raw_json(resp: Any) -> Any:
    return json.loads(resp.data)


class WatchReader:
    """Reads newline-delimited watch events from a raw (`_preload_content=False`) response."""

    def __init__(self, resp: Any) -> None:
        self.resp = resp
        self._chunks = resp.stream(amt=None, decode_content=False)
        self._buf = b""

    def next(self) -> dict[str, Any] | None:
        """The next event, or None when the stream ended cleanly."""
        while b"\n" not in self._buf:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)  # type: ignore[no-any-return]

    def take(self, n: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for _ in range(n):
            ev = self.next()
            assert ev is not None, f"stream ended after {out}"
            out.append(ev)
        return out

    def rest(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while (ev := self.next()) is not None:
            out.append(ev)
        return out

    def close(self) -> None:
        self.resp.release_conn()
