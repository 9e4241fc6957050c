"""Where the time of `lbsync once` goes, step by step, in one process: run by bench/perf.py with
each library set's interpreter, against a running emulator and nginx. Prints JSON (ms).

Each step runs alone, so that the floor can be added up from its parts: the interpreter's
start (measured by perf.py), TLS, transfer (the watch-list read to its end, unparsed), parse
(json.loads of every event: what is needed cannot be found without it), nginx -t, reload.
`list` is the same read as lbsync does it, streamed: transfer, parse and reduce overlap.
`test` is lbsync's test command: root's publisher (a Python process that checks every line
and copies the files where nginx reads them) and `nginx -t`; `nginx_t` is nginx's part alone.

    python bench/breakdown.py CONFIG -- NGINX_TEST_COMMAND...
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import gc  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402

# What `lbsync once` imports (lbsync.cli imports only the module of the command it runs).
import lbsync.cli  # noqa: E402
import lbsync.cmd_sync  # noqa: E402, F401
from lbsync import config, desired, files, kube, nginxctl, render, sync  # noqa: E402
from lbsync.model import node_from_json  # noqa: E402

IMPORTED = time.perf_counter()

STREAM = {"watch": "1", "sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan",
          "allowWatchBookmarks": "true", "timeoutSeconds": "120"}


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def main() -> int:
    out: dict[str, float] = {"import": ms(IMPORTED - T0)}
    t = time.perf_counter()
    cfg = config.load(config.config_path(sys.argv[1]))
    template = sync.load_template(cfg)
    client = kube.Client.from_config(cfg.kubernetes)
    out["config"] = ms(time.perf_counter() - t)

    t = time.perf_counter()
    client.call("GET", "/version", what="version")
    first = time.perf_counter() - t
    t = time.perf_counter()
    client.call("GET", "/version", what="version")
    out["tls"] = ms(first - (time.perf_counter() - t))  # connect + handshake

    t = time.perf_counter()
    response = client._open("GET", "/api/v1/nodes", STREAM, None, None, (5.0, 30.0), "list")
    chunks = []
    for chunk in response.stream(256 << 10):
        chunks.append(chunk)
        if kube.INITIAL_EVENTS_END.encode() in chunk[-400:]:
            break
    response.close()
    out["transfer"] = ms(time.perf_counter() - t)
    out["bytes_mb"] = round(sum(map(len, chunks)) / 1e6, 1)

    t = time.perf_counter()
    for line in kube.split_lines(iter(chunks), "list"):
        json.loads(line)  # parsed, and dropped: what a streaming reader holds at once
    out["parse"] = ms(time.perf_counter() - t)
    # All events parsed and kept, for the next step only (lbsync never holds them all: its
    # reader reduces each one as it arrives); the collector is off while they live, or its
    # passes over 5,000 kept documents would be timed as reducing.
    gc.disable()
    events = [json.loads(line) for line in kube.split_lines(iter(chunks), "list")]
    del chunks
    t = time.perf_counter()
    nodes = {n.name: n for n in (node_from_json(e["object"]) for e in events
                                 if e["type"] == "ADDED")}
    out["reduce"] = ms(time.perf_counter() - t)
    del events, nodes
    gc.enable()

    t = time.perf_counter()
    snapshot = sync.fetch_snapshot(client, cfg)
    out["list"] = ms(time.perf_counter() - t)  # streamed, as `once` reads (with the Service)
    out["nodes"] = len(snapshot.nodes)

    t = time.perf_counter()
    decided = desired.plan(snapshot, cfg)
    out["plan"] = ms(time.perf_counter() - t)
    t = time.perf_counter()
    texts = render.render(decided, template, cfg.nginx.server_options,
                          allow_loopback=cfg.nodes.allow_loopback,
                          port_range=cfg.nodes.port_range)
    out["render"] = ms(time.perf_counter() - t)
    t = time.perf_counter()
    for name, text in texts.items():
        files.write_atomic(cfg.nginx.servers_file(name), text.encode())
    out["write"] = ms(time.perf_counter() - t)
    t = time.perf_counter()
    tested = nginxctl.run(cfg.nginx.test_command, 30)
    out["test"] = ms(time.perf_counter() - t)
    t = time.perf_counter()
    nginx_t = nginxctl.run(tuple(sys.argv[sys.argv.index("--") + 1:]), 30)
    out["nginx_t"] = ms(time.perf_counter() - t)
    t = time.perf_counter()
    reloaded = nginxctl.run(cfg.nginx.reload_command, 30)
    out["reload"] = ms(time.perf_counter() - t)
    if not (tested.ok and nginx_t.ok and reloaded.ok):
        raise SystemExit(f"nginx failed: {tested.output} {nginx_t.output} {reloaded.output}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
