"""The process's exit codes, documented in the README. No I/O, no trio: the CLI's every
command returns one, and importing them must not cost it the event loop's import."""

from __future__ import annotations

import enum

__all__ = ["ExitCode"]


class ExitCode(enum.IntEnum):
    """Process exit codes, documented in the README."""

    OK = 0
    ERROR = 1
    USAGE = 2  # bad command line or configuration
    UNHEALTHY = 3  # a critical health check kept failing
    UNCLEAN = 4  # a component overran its stop timeout and was cut off
    DEADLINE = 5  # the hard shutdown deadline passed
    FORCED = 6  # a second signal forced the exit
