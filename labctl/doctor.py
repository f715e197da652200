"""``labctl doctor``: connect to every instrument of a chip, identify it, check its limits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from drivers.errors import DriverError
from labctl.config import resolve_chip
from labctl.errors import InstrumentFailure
from labctl.rig import Rig, open_rig


@dataclass(frozen=True)
class Finding:
    instrument: str
    resource: str
    identity: str
    detail: str
    ok: bool


def examine(chip: str, config: str | Path | None = None) -> list[Finding]:
    spec = resolve_chip(chip, config=config)
    try:
        with open_rig(spec) as rig:
            return [_check(rig, name, check) for name, check in CHECKS.items()]
    except InstrumentFailure as err:
        return [Finding("board", spec.config.board or "twin", "-", str(err), False)]


def _check(rig: Rig, name: str, check: Callable[[Rig], tuple[str, bool]]) -> Finding:
    instrument = rig.instruments().get(name)
    if instrument is None:
        return Finding(name, "-", "-", "not configured", True)
    resource = instrument.transport.resource
    try:
        identity = instrument.identify()
        detail, ok = check(rig)
    except DriverError as err:
        return Finding(name, resource, "-", str(err), False)
    return Finding(name, resource, identity, detail, ok)


def _board(rig: Rig) -> tuple[str, bool]:
    board, soa = rig.board, rig.spec.soa
    g, adc, limits = board.geometry(), board.adc(), board.pulse_limits()
    volts = board.read_voltage
    ok = volts <= soa.read_voltage_max_v
    return (f"{g.arrays}x{g.rows}x{g.cols}, ADC {adc.bits} bit ±{adc.full_scale_ua:g} µA, pulses within "
            f"+{limits.set_max_mv}/-{limits.reset_max_mv} mV, {limits.width_max_ns} ns; read {volts:g} V"
            f"{'' if ok else f' above the safe {soa.read_voltage_max_v:g} V'}", ok)


def _smu(rig: Rig) -> tuple[str, bool]:
    smu, soa = rig.smu, rig.spec.soa
    volts, limit, output = smu.source_voltage, smu.current_limit, smu.output_enabled
    problems = []
    if abs(volts) > soa.smu_voltage_max_v:
        problems.append(f"source {volts:g} V above the safe {soa.smu_voltage_max_v:g} V")
    if limit > soa.smu_current_limit_max_a:
        problems.append(f"current limit {limit:g} A above the safe {soa.smu_current_limit_max_a:g} A")
    state = f"source {volts:g} V, limit {limit:g} A, output {'on' if output else 'off'}"
    return (state + ("; " + "; ".join(problems) if problems else ""), not problems)


def _temperature(rig: Rig) -> tuple[str, bool]:
    tc, soa = rig.temperature, rig.spec.soa
    kelvin, set_point = tc.temperature_k, tc.set_point_k
    ok = soa.temperature_min_k <= kelvin <= soa.temperature_max_k
    return (f"{kelvin:.2f} K (set point {set_point:.2f} K), safe {soa.temperature_min_k:g}-{soa.temperature_max_k:g} K",
            ok)


CHECKS: dict[str, Callable[[Rig], tuple[str, bool]]] = {"board": _board, "smu": _smu, "temperature": _temperature}
