"""Results and their presentation: one line per step or check, for people or as JSON.

Owns the `Result`/`Report` model shared by every command, the exit-code policy, and both output
formats. Pure apart from the writer it is handed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, TextIO

from lbsync.errors import EXIT_FAILED, EXIT_OK, EXIT_WARNINGS


class Status(StrEnum):
    DONE = "done"  # changed something
    UNCHANGED = "unchanged"
    WOULD_CHANGE = "would change"  # --dry-run
    SKIPPED = "skipped"
    READY = "ready"  # a wait ended well
    DELETED = "deleted"
    ABSENT = "absent"
    FAILED = "failed"
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"

    @property
    def changed(self) -> bool:
        return self in (Status.DONE, Status.DELETED, Status.WOULD_CHANGE)

    @property
    def failed(self) -> bool:
        return self in (Status.FAILED, Status.FAIL)


@dataclass(frozen=True)
class Result:
    """One step or check: a name people recognise (usually the object), outcome, and why."""

    name: str
    status: Status
    message: str = ""
    hint: str = ""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        return {k: v for k, v in data.items() if v != ""}


@dataclass
class Report:
    command: str
    results: list[Result] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, result: Result) -> Result:
        self.results.append(result)
        return result

    @property
    def failed(self) -> bool:
        return any(r.status.failed for r in self.results)

    @property
    def changed(self) -> bool:
        return any(r.status.changed for r in self.results)

    @property
    def warned(self) -> bool:
        return any(r.status is Status.WARN for r in self.results)

    def exit_code(self) -> int:
        if self.failed:
            return EXIT_FAILED
        # Checks ran and nothing failed, but something deserves a look (check, doctor).
        return EXIT_WARNINGS if self.warned else EXIT_OK

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for r in self.results:
            counts[r.status.value] = counts.get(r.status.value, 0) + 1
        parts = ", ".join(f"{n} {s}" for s, n in counts.items())
        if self.failed:
            verdict = "FAILED"
        elif self.command == "apply":
            verdict = "changed" if self.changed else "unchanged"
        else:
            verdict = "warnings" if self.warned else "ok"
        return f"{self.command}: {verdict} ({parts or 'nothing to do'})"

    def to_json(self) -> dict[str, Any]:
        return {"command": self.command, "ok": not self.failed, "changed": self.changed,
                "warnings": self.warned, "exit_code": self.exit_code(),
                "results": [r.to_json() for r in self.results], **self.extra}


STATUS_WIDTH = 12  # the longest status ("would change"), so columns line up when streaming


def format_result(r: Result) -> str:
    line = f"{r.status.value:<{STATUS_WIDTH}}  {r.name}"
    if r.message:
        line += f": {r.message}"
    if r.hint and (r.status.failed or r.status is Status.WARN):
        line += f"\n{'':<{STATUS_WIDTH}}  fix: {r.hint}"
    return line + "\n"


def write_human(report: Report, out: TextIO) -> None:
    for r in report.results:
        out.write(format_result(r))
    out.write(report.summary() + "\n")


def write_json(report: Report, out: TextIO) -> None:
    json.dump(report.to_json(), out, indent=2, sort_keys=False)
    out.write("\n")
