"""A third-party board driver: labctl finds it through the ``labctl.boards`` entry point.

The "vendor API" here is a chip model held in process (``labctl_sims.ChipModel``, when
labctl is installed beside it); the driver keeps labctl's board contract itself: its own
limits, refusals before the instrument, its own clock and safe state.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SIDE = 24


class ExampleBoard:
    """A 24x24 crossbar on a made-up vendor's board with per-column converters and an MVM path."""

    retries = 0

    def __init__(self, chip: Any, soa: Any) -> None:
        from labctl_drivers.board import AdcInfo, Geometry, Identity, PulseLimits
        from labctl_drivers.instrument import LinkStats

        self.chip, self.soa, self.name = chip, soa, "board"
        self.link = LinkStats()
        self.calls = 0  # operations that reached the vendor API
        self._identity = Identity("Example Lab", "EX-24", f"seed{chip.seed}", "0.1.0")
        self._geometry = Geometry(1, SIDE, SIDE)
        self._adc = AdcInfo(chip.adc_bits, chip.adc_full_scale_ua)
        self._limits = PulseLimits(min(3000, soa.set_max_mv), min(3500, soa.reset_max_mv), soa.width_max_ns)
        self.read_voltage, self.averaging, self.array = 0.2, 1, 0
        self._width_ns, self._gain, self.driven = 100, 1, False

    def __setattr__(self, name: str, value: Any) -> None:
        from labctl_drivers.safety import check_range, refuse

        if name == "read_voltage":
            check_range("board", "read voltage", value, 1e-3, self.soa.read_voltage_max_v, " V")
        elif name == "averaging":
            check_range("board", "averaging", value, 1, 256)
        elif name == "array" and value != 0:
            raise refuse("board", f"array {value}: this board has one")
        super().__setattr__(name, value)

    # identity, geometry, limits
    def identity(self): return self._identity
    def identify(self) -> str: return str(self._identity)
    def geometry(self): return self._geometry
    def adc(self): return self._adc
    def capabilities(self) -> frozenset[str]: return frozenset({"MVM"})
    def pulse_limits(self): return self._limits
    def snapshot(self) -> dict[str, Any]: return {"idn": self.identify(), "driver": "example"}

    # clock and temperature
    def clock_s(self) -> float: return self.chip.clock.now()
    def temperature_k(self) -> float: return self.chip.sensor_temperature()
    def clock_and_temperature(self) -> tuple[float, float]: return self.clock_s(), self.temperature_k()
    def let_time_pass(self, seconds: float) -> None: self.chip.advance(seconds)

    # reading
    def read_array(self) -> np.ndarray:
        self.calls += 1
        return np.rint(self.chip.read_codes(0, slice(None), self.read_voltage, self.averaging)).astype(np.int16)

    def read_row(self, row: int) -> np.ndarray:
        self._check(row, 0)
        self.calls += 1
        return np.rint(self.chip.read_codes(0, slice(row, row + 1), self.read_voltage, self.averaging)[0]
                       ).astype(np.int16)

    def read_cell(self, row: int, col: int) -> int:
        self._check(row, col)
        return int(self.read_row(row)[col])

    def read_rows(self, rows):
        from labctl_drivers.safety import refuse
        raise refuse("board", "this board has no sparse reads (LIST)")

    # programming
    def set_pulse_width(self, width_ns: int) -> None:
        from labctl_drivers.safety import check_range
        check_range("board", "pulse width", width_ns, 10, self._limits.width_max_ns, " ns")
        self._width_ns = int(width_ns)

    def program_array(self, amplitudes_mv) -> None:
        amplitudes = self._amplitudes(amplitudes_mv, (SIDE, SIDE))
        self.calls += 1
        self.chip.program(0, slice(None), amplitudes, self._width_ns)

    def program_row(self, row: int, amplitudes_mv) -> None:
        self._check(row, 0)
        amplitudes = self._amplitudes(amplitudes_mv, (SIDE,))
        self.calls += 1
        self.chip.program(0, slice(row, row + 1), amplitudes[None, :], self._width_ns)

    def program_cell(self, row: int, col: int, amplitude_mv: int) -> None:
        self._check(row, col)
        self._amplitudes(np.array([amplitude_mv]), (1,))
        amplitudes = np.zeros(SIDE, dtype=np.int16)
        amplitudes[col] = amplitude_mv
        self.program_row(row, amplitudes)

    def program_list(self, rows, cols, amplitudes_mv):
        from labctl_drivers.safety import refuse
        raise refuse("board", "this board has no sparse programming (LIST)")

    # MVM
    def set_mvm_gain(self, gain: int) -> None:
        from labctl_drivers.safety import refuse
        if not (isinstance(gain, int) and 1 <= gain <= SIDE and gain & (gain - 1) == 0):
            raise refuse("board", f"MVM gain {gain!r} is not a power of two in 1..{SIDE}")
        self._gain = gain

    def mvm(self, dac_codes) -> np.ndarray:
        from labctl_drivers.safety import refuse
        codes = np.asarray(dac_codes)
        if codes.shape != (SIDE,) or np.abs(codes).max(initial=0) > 127:
            raise refuse("board", f"MVM inputs must be {SIDE} codes within -127..127")
        self.calls += 1
        self.driven = True
        return np.rint(self.chip.mvm_codes(0, codes, self.read_voltage, self.averaging, self._gain)).astype(np.int16)

    # what it does not have
    def route_probe(self, row, col=None) -> None:
        from labctl_drivers.safety import refuse
        if row is not None:
            raise refuse("board", "this board has no probe port (PROBE)")

    def solve_ranges(self):
        from labctl_drivers.safety import refuse
        raise refuse("board", "this board has no closed loop (IMVM)")

    def solve(self, input_codes):
        return self.solve_ranges()

    # leaving
    def reset(self) -> None:
        self.read_voltage, self.averaging, self._width_ns, self._gain = 0.2, 1, 100, 1

    def make_safe(self) -> None:
        self.driven = False

    def close(self) -> None:
        self.make_safe()

    # checks before the vendor API
    def _check(self, row: int, col: int) -> None:
        from labctl_drivers.safety import refuse
        if not (0 <= row < SIDE and 0 <= col < SIDE):
            raise refuse("board", f"cell ({row}, {col}) outside the {SIDE}x{SIDE} array")

    def _amplitudes(self, amplitudes_mv, shape) -> np.ndarray:
        from labctl_drivers.safety import refuse
        amplitudes = np.asarray(amplitudes_mv)
        if amplitudes.shape != shape:
            raise refuse("board", f"amplitudes of shape {amplitudes.shape}, expected {shape}")
        if not np.issubdtype(amplitudes.dtype, np.integer) and np.any(amplitudes != np.round(amplitudes)):
            raise refuse("board", "amplitudes must be whole millivolts")
        if amplitudes.max(initial=0) > self._limits.set_max_mv or -amplitudes.min(initial=0) > self._limits.reset_max_mv:
            raise refuse("board", "amplitude beyond the safe limits")
        return amplitudes.astype(np.float32)


def open_board(*, resource: str | None, options: dict[str, Any], soa: Any, timeout_s: float) -> ExampleBoard:
    """The ``example`` entry of ``labctl.boards``."""
    from labctl_sims.chip import ChipModel

    return ExampleBoard(ChipModel("pcm", seed=int(options.get("seed", 0)), rows=SIDE, cols=SIDE, arrays=1), soa)
