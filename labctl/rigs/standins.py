"""Stand-ins for instruments labctl drives through their vendors' bindings, over the twin's
chip model: the ArC TWO driver exercised end to end without an ArC TWO.

``board = { driver = "arc2-twin", options = { preset = "rram", seed = 0 } }`` in lab.toml
opens labctl's real ArC TWO driver (``labctl_drivers.arc2``) on an autospec of
``pyarc2.Instrument`` (``SignatureCheckedInstrument``): every call is checked against the
installed bindings' own signatures (a misspelt method, a missing or extra argument fails
as the real API would)
and then carried out by ``labctl_sims.arc2`` on a 32×32 chip model. Needs pyarc2
(``pip install 'labctl[arc2]'``); no instrument is opened.
"""

from __future__ import annotations

import inspect
from typing import Any

from labctl_drivers.arc2 import SIDE, Arc2Board
from labctl_drivers.errors import DriverError
from labctl_drivers.safety import SafeOperatingArea

MODELLED = ("read_all", "read_slice", "read_one", "read_slice_open", "pulse_one", "execute", "wait",
            "ground_all", "float_all", "config_channels", "set_channel_range", "finalise_operation")


class SignatureCheckedInstrument:
    """An autospec of ``pyarc2.Instrument`` without ``unittest.mock``'s per-call cost: each
    modelled method first binds its arguments to the installed bindings' own signature
    (``TypeError`` for what the real API would reject), then runs on ``behaviour``; a
    method pyarc2 has but the stand-in does not model fails loudly, and a name pyarc2
    lacks is an ``AttributeError``. ``calls`` counts what reached the instrument."""

    def __init__(self, pyarc2: Any, behaviour: Any) -> None:
        self._spec, self._behaviour, self.calls = pyarc2.Instrument, behaviour, 0
        self._signatures: dict[str, inspect.Signature] = {}

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._spec, name)  # AttributeError: the real API has no such member
        if name.startswith("_") or not callable(real):
            raise AttributeError(name)
        if name not in MODELLED:
            raise AssertionError(f"pyarc2.Instrument.{name} is not modelled by the stand-in")
        signature = self._signatures.get(name) or self._signatures.setdefault(name, inspect.signature(real))
        method = getattr(self._behaviour, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            signature.bind(self, *args, **kwargs)
            self.calls += 1
            result = method(*args, **kwargs)
            return self if result is None else result  # queueing calls return the instrument, so they chain

        return call


def open_arc2_twin(*, resource: str | None, options: dict[str, Any], soa: SafeOperatingArea,
                   timeout_s: float) -> Arc2Board:
    """The ``arc2-twin`` entry of ``labctl.boards``."""
    try:
        import pyarc2
    except ImportError:
        raise DriverError("the arc2-twin board needs pyarc2 for its signatures: pip install 'labctl[arc2]'") from None
    from labctl_sims.arc2 import Arc2Twin
    from labctl_sims.chip import ChipModel

    known = {"preset", "seed", "current_full_scale_ua"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise DriverError(f"arc2-twin: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    preset, seed = str(options.get("preset", "rram")), int(options.get("seed", 0))
    try:
        chip = ChipModel(preset, seed=seed, rows=SIDE, cols=SIDE, arrays=1)
    except (KeyError, ValueError) as err:
        raise DriverError(f"arc2-twin: {err}") from None
    behaviour = Arc2Twin(chip)
    board = Arc2Board(SignatureCheckedInstrument(pyarc2, behaviour), pyarc2, soa=soa, serial=f"{preset}-{seed}",
                      model="ArC TWO-TWIN", current_full_scale_ua=float(options.get("current_full_scale_ua", 10.0)),
                      clock=chip.clock.now, wait=chip.advance, temperature=chip.sensor_temperature)
    board.standin = behaviour  # tests read the stand-in's state (and its chip's ground truth) here
    return board
