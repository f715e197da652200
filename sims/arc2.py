"""An ArC TWO's behaviour over the twin's chip model: what ``pyarc2.Instrument``'s calls do
to a 32×32 crossbar, for testing drivers of it without the instrument.

This module only models behaviour; it does not import pyarc2. ``labctl.rigs.standins``
puts it behind an autospec of the real ``pyarc2.Instrument``, so a call the real bindings
would refuse (a wrong name, a missing or extra argument) fails before it gets here.

What it models, as pyarc2's documentation describes the instrument: 64 channels, word
lines on 0–15 and 32–47 and bit lines on 16–31 and 48–63 of the standard daughterboard;
operations queued (pulses, channel configurations, grounding) until ``execute``, reads
done at once after whatever is queued; each read measures the lines' own currents (no
column converter), in amperes; channels that are not grounded or configured float. What
it does not model: timing of the instrument itself (the chip model's read and pulse times
are charged), fast/high-speed pulses, ramps, trains, selectors, the auxiliary DACs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labctl_sims.chip import ChipModel

SIDE = 32
CHANNELS = 64
RANGE_V = {"STD": 10.0, "EXT": 20.0}


def _word_line(channel: int) -> int | None:
    if 0 <= channel < 16:
        return channel
    if 32 <= channel < 48:
        return channel - 16
    return None


def _bit_line(channel: int) -> int | None:
    if 16 <= channel < 32:
        return channel - 16
    if 48 <= channel < 64:
        return channel - 32
    return None


class Arc2Error(RuntimeError):
    """What the instrument would refuse (pyarc2 raises ``ArC2Error``)."""


class Arc2Twin:
    """The instrument's side of pyarc2's calls, on one array of a chip model."""

    def __init__(self, chip: ChipModel, array: int = 0) -> None:
        if chip.rows != SIDE or chip.cols != SIDE:
            raise ValueError(f"an ArC TWO daughterboard holds a {SIDE}x{SIDE} crossbar, not {chip.rows}x{chip.cols}")
        self.chip, self.array = chip, array
        self._queue: list[tuple[str, Any]] = []
        self.volts = np.zeros(CHANNELS)  # what each channel is driven at
        self.grounded = np.ones(CHANNELS, dtype=bool)
        self.range_v = np.full(CHANNELS, RANGE_V["STD"])
        self.pulses = 0  # pulses that reached the chip (tests count them)
        self.executions = 0

    # ---- state the tests read ------------------------------------------------------

    def at_rest(self) -> bool:
        """Nothing queued, every channel grounded or floating at 0 V."""
        return not self._queue and bool(np.all(self.volts == 0.0))

    # ---- configuration -------------------------------------------------------------

    def set_channel_range(self, chans: Any, rng: Any) -> Any:
        name = getattr(rng, "name", str(rng).rsplit(".", 1)[-1])
        if name not in RANGE_V:
            raise Arc2Error(f"unknown output range {rng!r}")
        for channel in self._channels(chans):
            self.range_v[channel] = RANGE_V[name]

    def ground_all(self) -> None:
        self._queue.append(("ground", None))

    def float_all(self) -> None:
        self._queue.append(("float", None))

    def config_channels(self, config: Any, base: float | None) -> None:
        pairs = [(int(channel), float(volts)) for channel, volts in config]
        for channel, volts in pairs:
            self._check_channel(channel)
            self._check_voltage(channel, volts)
        if base is not None:
            for channel in range(CHANNELS):
                self._check_voltage(channel, base)
        self._queue.append(("config", (pairs, base)))

    def finalise_operation(self, mode: Any = None, control: Any = None) -> None:
        name = getattr(mode, "name", None)
        if name in ("SoftGnd", "HardGnd"):
            self._queue.append(("ground", None))
        elif name == "Float":
            self._queue.append(("float", None))
        self.execute()

    def pulse_one(self, low: int, high: int, voltage: float, nanos: int) -> None:
        row, col = self._crosspoint(low, high)
        self._check_voltage(high, voltage)
        if not nanos > 0:
            raise Arc2Error(f"pulse width {nanos} ns must be positive")
        self._queue.append(("pulse", (row, col, float(voltage), int(nanos))))

    def execute(self) -> None:
        self.executions += 1
        queue, self._queue = self._queue, []
        pulses: dict[int, list[tuple[int, int, float]]] = {}
        for kind, payload in queue:
            if kind == "pulse":
                row, col, volts, nanos = payload
                pulses.setdefault(nanos, []).append((row, col, volts))
                continue
            self._flush_pulses(pulses)
            if kind == "ground":
                self.volts[:] = 0.0
                self.grounded[:] = True
            elif kind == "float":
                self.volts[:] = 0.0
                self.grounded[:] = False
            elif kind == "config":
                pairs, base = payload
                if base is not None:
                    self.volts[:] = base
                for channel, volts in pairs:
                    self.volts[channel] = volts
                self.grounded[:] = False
        self._flush_pulses(pulses)

    def wait(self) -> None:
        if self._queue:
            raise Arc2Error("wait() with operations queued but never executed")

    def _flush_pulses(self, pulses: dict[int, list[tuple[int, int, float]]]) -> None:
        """Queued pulses reach the chip, one per cell, each width in one pass (mV, as the model takes them)."""
        for nanos, listed in pulses.items():
            cells = np.array([(r, c) for r, c, _ in listed])
            rows = np.unique(cells[:, 0])
            amplitudes = np.zeros((rows.size, SIDE), dtype=np.float32)
            slot = np.searchsorted(rows, cells[:, 0])
            amplitudes[slot, cells[:, 1]] = [v * 1000.0 for _, _, v in listed]
            self.chip.program_rows(self.array, rows, amplitudes, nanos)
            self.pulses += len(listed)
        pulses.clear()

    # ---- reads (done at once; what is queued runs first) -----------------------------

    def read_all(self, vread: float, order: Any) -> np.ndarray:
        self._before_read(vread)
        return (self.chip.read_currents_ua(self.array, slice(None), vread) * 1e-6).astype(np.float32)

    def read_slice(self, chan: int, vread: float) -> np.ndarray:
        self._before_read(vread)
        row = _word_line(int(chan))
        if row is None:
            raise Arc2Error(f"channel {chan} is a bit line: this stand-in models row reads only")
        rows = np.array([row])
        return (self.chip.read_currents_ua(self.array, rows, vread)[0] * 1e-6).astype(np.float32)

    def read_one(self, low: int, high: int, vread: float) -> float:
        row, col = self._crosspoint(low, high)
        return float(self.read_slice(low, vread)[col])

    def read_slice_open(self, highs: Any, ground_after: bool | None) -> np.ndarray:
        """The listed bit lines' currents with the word lines as configured (an analogue MVM)."""
        if self._queue:
            self.execute()
        cols = [_bit_line(channel) for channel in self._channels(highs)]
        if any(col is None for col in cols):
            raise Arc2Error("read_slice_open: this stand-in reads bit lines only")
        v_rows = np.array([self.volts[ch] for ch in (r if r < 16 else r + 16 for r in range(SIDE))])
        currents = self.chip.column_currents_ua(self.array, v_rows) * 1e-6
        if ground_after is None or ground_after:
            self.volts[:] = 0.0
            self.grounded[:] = True
        return currents[np.array(cols)].astype(np.float32)

    # ---- checks --------------------------------------------------------------------

    def _before_read(self, vread: float) -> None:
        if not 0 < abs(vread) <= 1.0:
            raise Arc2Error(f"read voltage {vread} V outside what this stand-in models (0..1 V)")
        if self._queue:
            self.execute()

    def _channels(self, chans: Any) -> list[int]:
        channels = [int(channel) for channel in np.asarray(chans, dtype=np.uint64).ravel()]
        for channel in channels:
            self._check_channel(channel)
        return channels

    @staticmethod
    def _check_channel(channel: int) -> None:
        if not 0 <= channel < CHANNELS:
            raise Arc2Error(f"channel {channel} outside 0..{CHANNELS - 1}")

    def _check_voltage(self, channel: int, volts: float) -> None:
        if not abs(volts) <= self.range_v[channel]:
            raise Arc2Error(f"{volts} V on channel {channel} beyond its ±{self.range_v[channel]:g} V range")

    def _crosspoint(self, low: int, high: int) -> tuple[int, int]:
        self._check_channel(int(low))
        self._check_channel(int(high))
        row, col = _word_line(int(low)), _bit_line(int(high))
        if row is None or col is None:
            raise Arc2Error(f"channels {low} (low) and {high} (high) are not a word line and a bit line")
        return row, col
