"""Applying rendered files to NGINX: compare, swap, test, reload, confirm, roll back.

The certbot-nginx order: `nginx -t` can only check the whole configuration, so the new files
are put in place first (the test command publishes them, as root, after checking each line),
tested, and the previous bytes are put back if the test or the reload fails. A reload only
counts when nginx started a new generation of workers: `nginx -s reload` exits 0 even when the
master then refuses the new configuration (a port it cannot bind), and keeps the old one.
What NGINX last loaded is recorded after each confirmed reload; when the files and the record
both match, nothing is written, tested or reloaded. A pass interrupted after the write
(SIGKILL during `nginx -t`) left no record, so the next one tests and reloads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from lbsync import files, nginxctl
from lbsync.config import NginxConfig
from lbsync.errors import ApplyError


class Outcome(StrEnum):
    UNCHANGED = "unchanged"
    RELOADED = "reloaded"


@dataclass(frozen=True)
class Applied:
    outcome: Outcome
    previous: Mapping[str, list[str]] | None  # the servers NGINX ran before (None: unknown)


def apply(new: Mapping[Path, bytes], cfg: NginxConfig, servers: Mapping[str, list[str]],
          *, force: bool = False) -> Applied:
    """Make the files hold `new` and NGINX run them. Caller holds the output lock.

    `servers` (per upstream) is recorded with the files' digest, so that the next pass knows
    what NGINX runs without reading files back.
    """
    files.check_output_dir(cfg.servers_dir)
    record = files.read_record(cfg.servers_dir, cfg.state_dir)
    previous = servers_of(record)
    digest = files.digest(new)
    old = {path: files.read(path) for path in new}
    if not force and record is not None and record.get("digest") == digest and \
            all(old[path] == data for path, data in new.items()):
        return Applied(Outcome.UNCHANGED, previous)
    files.forget_record(cfg.servers_dir, cfg.state_dir)
    for path, data in new.items():
        if old[path] != data:
            files.write_atomic(path, data)
    _test_and_reload(cfg, old, new)
    files.write_record(cfg.servers_dir, cfg.state_dir,
                       {"digest": digest, "upstreams": {k: list(v) for k, v in servers.items()}})
    return Applied(Outcome.RELOADED, previous)


def _test_and_reload(cfg: NginxConfig, old: Mapping[Path, bytes | None],
                     new: Mapping[Path, bytes]) -> None:
    tested = nginxctl.run(cfg.test_command, cfg.command_timeout)
    if not tested.ok:
        _restore(old, new)
        raise ApplyError(
            f"nginx test failed, previous file restored: {tested.first_error}", "test")
    master = nginxctl.master_pid(cfg.pid_file) if cfg.pid_file is not None else None
    before = nginxctl.workers(master) if master is not None else set()
    offset = nginxctl.log_size(cfg.error_log)
    reloaded = nginxctl.run(cfg.reload_command, cfg.command_timeout)
    problem = "" if reloaded.ok else reloaded.first_error
    if not problem and master is not None:
        problem = nginxctl.confirm_reload(master, before, cfg.command_timeout, cfg.error_log,
                                          offset)
    if problem:
        # The master may not run the new files: put the old ones back (and publish them
        # again) so that the files keep describing what nginx runs; the next pass retries.
        _restore(old, new)
        nginxctl.run(cfg.test_command, cfg.command_timeout)
        raise ApplyError(f"nginx reload failed, previous file restored: {problem}", "reload")


def _restore(old: Mapping[Path, bytes | None], new: Mapping[Path, bytes]) -> None:
    for path, data in old.items():
        if data != new[path]:
            files.restore(path, data)


def servers_of(record: Mapping[str, Any] | None) -> dict[str, list[str]] | None:
    """The per-upstream servers a record names (None: no usable record)."""
    upstreams = (record or {}).get("upstreams")
    if not isinstance(upstreams, dict):
        return None
    return {str(k): [str(s) for s in v] for k, v in upstreams.items() if isinstance(v, list)}
