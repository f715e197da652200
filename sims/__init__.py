"""The software twin of an analogue in-memory-computing test rig.

It knows only the wire protocols: a driver talks to it with the same bytes it would
send a real board. Tests may read its hidden ground truth through
``ChipModel.ground_truth()``; nothing else should. The physics is described, with
its sources, in ``sims/README.md``.
"""

from labctl_sims.board import BoardTwin
from labctl_sims.chip import ChipModel, GroundTruth
from labctl_sims.presets import PRESETS, DeviceParams

__all__ = ["BoardTwin", "ChipModel", "DeviceParams", "GroundTruth", "PRESETS"]
