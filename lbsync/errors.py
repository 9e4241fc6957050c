"""The two kinds of failure lbsync reports, and the exit code each maps to."""

EXIT_OK = 0
EXIT_SYNC_FAILED = 1
EXIT_USAGE = 2


class LbsyncError(Exception):
    """A failure with a one-line message meant for the operator."""

    exit_code = EXIT_SYNC_FAILED


class ConfigError(LbsyncError):
    """Bad configuration or usage: exit 2. The message names the key or path."""

    exit_code = EXIT_USAGE


class SyncError(LbsyncError):
    """A sync pass could not complete (cluster, Service, nginx): exit 1."""

    exit_code = EXIT_SYNC_FAILED
