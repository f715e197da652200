"""The reliability campaign: crashes, wire faults, hostile input, concurrency, disk trouble.

Every test here carries the ``reliability`` marker (``pytest -m reliability`` runs just
these). CI runs a short campaign; ``LABCTL_CAMPAIGN=N`` multiplies kill points and
fuzzing examples by N for a longer one (``LABCTL_CAMPAIGN=10 pytest -m reliability``).
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.reliability)
