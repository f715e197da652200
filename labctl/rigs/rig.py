"""Opening the instruments of one chip's bench (a "rig") and closing them again."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import IO, Any

from labctl_drivers.board import SERIAL_SETTINGS as BOARD_SERIAL
from labctl_drivers.board import Board, Identity
from labctl_drivers.interface import ChipBoard
from labctl_drivers.errors import DriverError
from labctl_drivers.smu import Keithley2450
from labctl_drivers.temperature import SERIAL_SETTINGS as LAKESHORE_SERIAL
from labctl_drivers.temperature import LakeShore335
from labctl_drivers.transport import InProcessTransport, Transport, open_transport
from labctl.rigs.config import BoardDriver, ChipSpec, FieldDriver, with_geometry
from labctl.errors import InstrumentFailure



@dataclass
class Rig:
    spec: ChipSpec
    board: ChipBoard
    identity: Identity
    smu: Keithley2450 | None = None
    temperature: LakeShore335 | None = None
    twin: Any = None  # the in-process twin rig, when the chip is simulated here (tests read it)
    heater_on_exit: str = "hold"  # "off": the controller's heater is switched off when the rig closes

    @property
    def chip_identity(self) -> str:
        """Which physical chip this is (the board's maker, model and serial): what records are keyed by."""
        from labctl.runs.records import chip_identity

        return chip_identity(self.identity.maker, self.identity.model, self.identity.serial)

    def instruments(self) -> dict[str, Any]:
        found = {"board": self.board, "smu": self.smu, "temperature": self.temperature}
        return {name: inst for name, inst in found.items() if inst is not None}

    def link_stats(self) -> dict[str, Any]:
        """Lost and damaged replies, link drops, retries and time lost, in total and per instrument."""
        per = {name: inst.link.as_dict() for name, inst in self.instruments().items()}
        total: dict[str, Any] = {key: sum(stats[key] for stats in per.values()) for key in next(iter(per.values()))}
        total["time_lost_s"] = round(total["time_lost_s"], 3)
        return {**total, "timeout_s": self.spec.config.timeout_s, "by_instrument": per}

    def snapshot(self) -> dict[str, Any]:
        return {name: inst.snapshot() for name, inst in self.instruments().items()}


@contextmanager
def open_rig(spec: ChipSpec) -> Iterator[Rig]:
    """Connect, identify and check the geometry; always close on the way out."""
    with ExitStack() as stack:
        trace = stack.enter_context(open(spec.config.trace, "a", encoding="utf-8")) if spec.config.trace else None
        try:
            transports, twin = _transports(spec, trace)
        except DriverError as err:
            raise InstrumentFailure(f"{spec.name}: {err}") from None
        for transport in transports.values():
            stack.callback(transport.close)
        soa = spec.soa
        if isinstance(spec.config.board, BoardDriver):
            board = _driver_board(spec, soa)
            stack.callback(board.close)
        else:
            board = Board(transports["board"], soa=soa)
        smu = Keithley2450(transports["smu"], soa=soa) if "smu" in transports else None
        if isinstance(spec.config.smu, FieldDriver):
            smu = _field_instrument(spec, "smu", soa)
            stack.callback(smu.close)
        temperature = LakeShore335(transports["temperature"], soa=soa) if "temperature" in transports else None
        if isinstance(spec.config.temperature, FieldDriver):
            temperature = _field_instrument(spec, "temperature", soa)
            stack.callback(temperature.close)
        for instrument in (board, smu, temperature):
            if instrument is not None:
                instrument.retries = spec.config.retries
        try:
            identity = board.identity()
            geometry = board.geometry()
        except DriverError as err:
            raise InstrumentFailure(f"{spec.name}: board did not identify: {err}") from None
        if spec.rows is not None and (geometry.rows, geometry.cols) != (spec.rows, spec.cols):
            raise InstrumentFailure(
                f"{spec.name}: board reports a {geometry.rows}x{geometry.cols} array, "
                f"configuration says {spec.rows}x{spec.cols}"
            )
        spec = with_geometry(spec, geometry.rows, geometry.cols)
        rig = Rig(spec, board, identity, smu, temperature, twin)
        stack.callback(_safe_state, rig)  # runs before the transports close, on any exit
        yield rig


def _driver_board(spec: ChipSpec, soa) -> ChipBoard:
    from labctl_drivers.plugins import open_board

    table = spec.config.board
    try:
        return open_board(table.driver, resource=table.resource, options=dict(table.options), soa=soa,
                          timeout_s=spec.config.timeout_s)
    except DriverError as err:
        raise InstrumentFailure(f"{spec.name}: {err}") from None


def _field_instrument(spec: ChipSpec, kind: str, soa):
    """The SMU or temperature controller a field driver table names, opened behind the chip's limits."""
    from labctl_drivers.field import open_field_instrument

    field = getattr(spec.config, kind)
    try:
        return open_field_instrument(kind, field.driver, field.resource, dict(field.options), soa=soa,
                                     timeout_s=spec.config.timeout_s)
    except DriverError as err:
        raise InstrumentFailure(f"{spec.name}: {err}") from None


def _transports(spec: ChipSpec, trace: IO[str] | None) -> tuple[dict[str, Transport], Any]:
    config = spec.config
    if config.twin is not None:
        return twin_transports(spec, trace)
    smu, temperature = (None if isinstance(field, FieldDriver) else field  # a field driver opens its own link
                        for field in (config.smu, config.temperature))
    board = None if isinstance(config.board, BoardDriver) else config.board  # so does a board driver
    resources = {"board": (board, BOARD_SERIAL), "smu": (smu, None), "temperature": (temperature, LAKESHORE_SERIAL)}
    opened: dict[str, Transport] = {}
    try:
        for name, (resource, serial) in resources.items():
            if resource:
                opened[name] = open_transport(resource, config.timeout_s, serial, trace, name)
    except DriverError:
        for transport in opened.values():
            transport.close()
        raise
    return opened, None


def twin_transports(spec: ChipSpec, trace: IO[str] | None) -> tuple[dict[str, Transport], Any]:
    """An in-process twin rig built from the chip's twin options, and a transport to each of its devices."""
    from labctl_sims.server import TwinRig

    twin_options = spec.config.twin
    twin = TwinRig.build(twin_options.preset, seed=twin_options.seed, rows=spec.rows, cols=spec.cols,
                         overrides=twin_options.params)
    transports: dict[str, Transport] = {
        name: InProcessTransport(device.feed, resource=f"twin://{spec.name}/{name}")
        for name, device in twin.devices.items()
    }
    if trace is not None:
        from labctl_drivers.transport import TracedTransport

        transports = {name: TracedTransport(t, trace, name) for name, t in transports.items()}
    return transports, twin


def _safe_state(rig: Rig) -> None:
    """Leave the bench safe however the run ended: SMU at 0 V with its output off, probe port open.

    The temperature controller holds its set point or switches its heater off, as the
    protocol says; each step is tried on its own so one failing instrument does not
    spare the others.
    """
    import logging
    import signal
    import threading

    log = logging.getLogger("labctl.rigs.rig")
    actions = [("board: safe state", rig.board.make_safe)]
    if rig.smu is not None:
        actions.append(("smu: 0 V, output off", rig.smu.shutdown))
    if rig.temperature is not None and rig.heater_on_exit == "off":
        actions.append(("temperature: heater off", rig.temperature.heater_off))
    # a second Ctrl-C (or SIGTERM) while the bench is being made safe must not cut that short
    in_main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)} if in_main else {}
    try:
        for label, action in actions:
            try:
                action()
            except (DriverError, OSError) as err:
                log.warning("safe state not confirmed (%s): %s", label, err)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
