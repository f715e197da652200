"""``labctl doctor``: connect to every instrument of a chip, identify it, check its limits.

Each instrument is opened and judged on its own, so a dead SMU is named as the SMU and
the board and controller are still checked. The doctor only asks: it changes no
setting and leaves no "safe state" behind, and it takes the chip's lock like a run
does, so it refuses (naming the run) while a run holds the chip instead of disturbing it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl_drivers.board import Board
from labctl_drivers.errors import DriverError
from labctl_drivers.safety import SafeOperatingArea
from labctl_drivers.smu import Keithley2450
from labctl_drivers.temperature import LakeShore335
from labctl_drivers.transport import Transport, open_transport
from labctl.rigs.config import BoardDriver, ChipSpec, FieldDriver, resolve_chip
from labctl.rigs.lock import chip_lock
from labctl.rigs.rig import BOARD_SERIAL, LAKESHORE_SERIAL, twin_transports


@dataclass(frozen=True)
class Finding:
    instrument: str
    resource: str
    identity: str
    detail: str
    ok: bool


def examine(chip: str, config: str | Path | None = None) -> list[Finding]:
    """One finding per instrument, configured or not; raises ``ChipBusy`` while a run holds the chip."""
    spec = resolve_chip(chip, config=config)
    with chip_lock(spec.name, "labctl doctor", spec.resources):
        transports = twin_transports(spec, None)[0] if spec.is_twin else None
        try:
            return [_examine_one(spec, name, transports) for name in CHECKS]
        finally:
            for transport in (transports or {}).values():
                transport.close()


def _examine_one(spec: ChipSpec, name: str, twin: dict[str, Transport] | None) -> Finding:
    driver, serial, check = CHECKS[name]
    field = getattr(spec.config, name)
    if twin is None and isinstance(field, FieldDriver):
        return _examine_field(spec, name, field, check)
    if twin is None and isinstance(field, BoardDriver):
        return _examine_board_driver(spec, field)
    if twin is not None:
        transport = twin[name]
    else:
        resource = getattr(spec.config, name)
        if not resource:
            return Finding(name, "-", "-", "not configured", name != "board")
        try:
            transport = open_transport(resource, spec.config.timeout_s, serial, None, name)
        except DriverError as err:
            return Finding(name, resource, "-", f"cannot connect: {err}", False)
    try:
        instrument = driver(transport, soa=spec.soa)
        instrument.retries = spec.config.retries
        try:
            identity = instrument.identify()
            detail, ok = check(instrument, spec.soa)
        except DriverError as err:
            return Finding(name, transport.resource, "-", str(err), False)
        return Finding(name, transport.resource, identity, detail, ok)
    finally:
        if twin is None:
            transport.close()


def _examine_field(spec: ChipSpec, name: str, field: FieldDriver, check: Check) -> Finding:
    """An instrument behind the field's own driver class: opened, identified, checked and closed."""
    from labctl_drivers.field import open_field_instrument

    try:
        instrument = open_field_instrument(name, field.driver, field.resource, dict(field.options), name, spec.soa,
                                           spec.config.timeout_s)
    except DriverError as err:
        return Finding(name, field.resource, "-", f"cannot connect: {err}", False)
    try:
        identity = instrument.identify()
        detail, ok = check(instrument, spec.soa)
        return Finding(name, field.resource, identity, f"{field.driver}: {detail}", ok)
    except DriverError as err:
        return Finding(name, field.resource, "-", str(err), False)
    finally:
        instrument.close()


def _examine_board_driver(spec: ChipSpec, table: BoardDriver) -> Finding:
    """A board opened by a registered driver: loaded, checked against the interface, identified,
    its limits and capabilities shown, left safe and closed."""
    from labctl_drivers.plugins import board_drivers, driver_origin, open_board

    where = table.where
    try:
        board = open_board(table.driver, resource=table.resource, options=dict(table.options), soa=spec.soa,
                           timeout_s=spec.config.timeout_s)
    except DriverError as err:
        return Finding("board", where, "-", f"cannot open: {err}", False)
    try:
        identity = board.identify()
        detail, ok = _board(board, spec.soa)
        origin = driver_origin(board_drivers()[table.driver])
        listed = ",".join(sorted(board.capabilities())) or "none"
        return Finding("board", where, identity, f"{table.driver} driver ({origin}), capabilities {listed}; {detail}", ok)
    except DriverError as err:
        return Finding("board", where, "-", str(err), False)
    finally:
        board.make_safe()
        board.close()


def _board(board: Board, soa: SafeOperatingArea) -> tuple[str, bool]:
    g, adc, limits = board.geometry(), board.adc(), board.pulse_limits()
    volts = board.read_voltage
    ok = volts <= soa.read_voltage_max_v
    return (f"{g.arrays}x{g.rows}x{g.cols}, ADC {adc.bits} bit ±{adc.full_scale_ua:g} µA, pulses within "
            f"+{limits.set_max_mv}/-{limits.reset_max_mv} mV, {limits.width_max_ns} ns; read {volts:g} V"
            f"{'' if ok else f' above the safe {soa.read_voltage_max_v:g} V'}", ok)


def _smu(smu: Keithley2450, soa: SafeOperatingArea) -> tuple[str, bool]:
    volts, limit, output = smu.source_voltage, smu.current_limit, smu.output_enabled
    problems = []
    if abs(volts) > soa.smu_voltage_max_v:
        problems.append(f"source {volts:g} V above the safe {soa.smu_voltage_max_v:g} V")
    if limit > soa.smu_current_limit_max_a:
        problems.append(f"current limit {limit:g} A above the safe {soa.smu_current_limit_max_a:g} A")
    state = f"source {volts:g} V, limit {limit:g} A, output {'on' if output else 'off'}"
    return (state + ("; " + "; ".join(problems) if problems else ""), not problems)


def _temperature(tc: LakeShore335, soa: SafeOperatingArea) -> tuple[str, bool]:
    kelvin, set_point, heater = tc.temperature_k, tc.set_point_k, tc.heater_range
    ok = soa.temperature_min_k <= kelvin <= soa.temperature_max_k
    heater_text = {0: "off", 1: "low", 2: "medium", 3: "high"}.get(heater, str(heater))
    return (f"{kelvin:.2f} K (set point {set_point:.2f} K, heater {heater_text}), "
            f"safe {soa.temperature_min_k:g}-{soa.temperature_max_k:g} K", ok)


Check = Callable[[Any, SafeOperatingArea], tuple[str, bool]]
CHECKS: dict[str, tuple[type, dict[str, Any] | None, Check]] = {
    "board": (Board, BOARD_SERIAL, _board),
    "smu": (Keithley2450, None, _smu),
    "temperature": (LakeShore335, LAKESHORE_SERIAL, _temperature),
}
