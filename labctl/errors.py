"""Errors the CLI turns into one line on stderr and an exit code.

2: bad input (arguments, config, protocol or targets file): nothing was started.
1: an instrument or a run failed (a typed driver error, with the resource and the
   last command), as when a protocol's acceptance limits fail.
"""

from __future__ import annotations


class LabctlError(Exception):
    exit_code = 1


class UsageError(LabctlError):
    exit_code = 2


class InstrumentFailure(LabctlError):
    """An instrument did not answer, answered wrongly, or reported an error."""


class RunFailed(LabctlError):
    """A run started and could not finish; its manifest says ``failed`` and why."""


class RunInterrupted(LabctlError):
    """Ctrl-C or SIGTERM during a run: it is marked ``aborted`` and the message says how to go on."""

    exit_code = 130
