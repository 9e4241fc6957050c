"""Every failure lbsync reports, in one tree, and the one mapping from failure to exit code.

Each error's message is one line meant for the operator: it names the config key, object or
path. `lbsync` and `lbsync bootstrap` share the tree and the exit codes:

    0  success (changed or unchanged)
    1  the job failed (cluster, Service, nginx, helm, too few nodes); nothing was half-done
    2  usage or configuration error
    3  checks passed with warnings (`bootstrap check`, `bootstrap doctor`): an outcome, not
       an error, so no exception maps to it
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_WARNINGS = 3


class LbsyncError(Exception):
    """A failure with a one-line message meant for the operator: exit 1."""

    exit_code = EXIT_FAILED


class ConfigError(LbsyncError):
    """Bad configuration or usage: exit 2. The message names the key, flag or path."""

    exit_code = EXIT_USAGE


class SyncError(LbsyncError):
    """A sync pass could not complete (cluster, Service, nginx): exit 1."""


class ApiError(SyncError):
    """A failed Kubernetes API call. `status` is the HTTP status, None when no answer came."""

    def __init__(self, message: str, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """Connection failures, 429 and 5xx may pass by themselves; other 4xx will not."""
        return self.status is None or self.status == 429 or self.status >= 500

    @property
    def code(self) -> str:
        """A short label for metrics: the HTTP status, or "connection"."""
        return "connection" if self.status is None else str(self.status)


class Expired(ApiError):
    """410: the resourceVersion or continue token is too old; list again."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 410)


class ApplyError(SyncError):
    """NGINX rejected the new files; `stage` is "test" or "reload". The old files are back.
    `plan` is the plan that was refused (set by the pass), so the caller can tell what was
    new in it."""

    def __init__(self, message: str, stage: str) -> None:
        super().__init__(message)
        self.stage = stage
        self.plan: object = None


class Locked(SyncError):
    """Another lbsync process holds the lock on this output."""


class HelmError(LbsyncError):
    """helm is missing or a helm command failed: exit 1."""
