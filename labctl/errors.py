"""Errors the CLI turns into exit codes: 2 for bad input, 3 for a run that failed."""

from __future__ import annotations


class LabctlError(Exception):
    exit_code = 3


class UsageError(LabctlError):
    """Bad input (arguments, config, protocol or targets file): nothing was started."""

    exit_code = 2


class RunFailed(LabctlError):
    """A run started and could not finish; its manifest says ``failed``."""

    exit_code = 3
