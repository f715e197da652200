"""Named moments where the reliability suite kills labctl on purpose.

Random kill times rarely land in a window a few microseconds wide (the write probe of
the data directory, say), so the crash suite also names such windows:
``LABCTL_CRASH_AT=<point>`` makes the process SIGKILL itself there. Points: ``probe``
(the data directory's write probe) and ``drift-read-<k>-<i>`` (read i of drift
temperature k, stored but not yet in the journal). Unset, as in every normal run,
``reached`` is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal


def reached(point: str) -> None:
    if os.environ.get("LABCTL_CRASH_AT") == point:
        os.kill(os.getpid(), signal.SIGKILL)
