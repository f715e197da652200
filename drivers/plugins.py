"""Board drivers found through the ``labctl.boards`` entry point group.

A driver package outside labctl registers a factory in its own ``pyproject.toml``::

    [project.entry-points."labctl.boards"]
    mylab = "mylab_board:open_board"

and a rig names it in ``lab.toml``: ``board = { driver = "mylab", resource = "…", options = { … } }``.
The factory is called with keyword arguments ``resource`` (a string or None), ``options``
(the table's ``options``), ``soa`` (the chip's safe operating area, which the driver must
enforce before its instrument sees anything) and ``timeout_s``, and returns an object with
every member of :class:`~labctl_drivers.interface.ChipBoard`; one that lacks some is refused
with their names. labctl's own drivers are registered the same way (``scpi``, ``arc2``), so
``labctl rigs --drivers`` lists them beside the lab's.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

from labctl_drivers.errors import DriverError
from labctl_drivers.interface import ChipBoard, missing_members
from labctl_drivers.safety import SafeOperatingArea

BOARD_GROUP = "labctl.boards"
INSTRUMENT_GROUP = "labctl.instruments"  # SMUs and temperature controllers, by what they offer:
MEMBERS_BY_KIND = {
    "smu": ("configure_voltage_source", "source_voltage", "current_limit", "output_enabled", "measure_current",
            "shutdown", "identify", "snapshot", "close", "link"),  # what labctl_drivers.smu.Keithley2450 offers
    "temperature": ("temperature_k", "set_point_k", "heater_range", "heater_off", "identify", "snapshot", "close",
                    "link"),  # what labctl_drivers.temperature.LakeShore335 offers
}


def board_drivers() -> dict[str, EntryPoint]:
    """Every registered board driver by name (the first one registered wins a clash)."""
    return registered(BOARD_GROUP)


def registered(group: str) -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for point in entry_points(group=group):
        found.setdefault(point.name, point)
    return found


def open_instrument(driver: str, *, resource: str, options: dict[str, Any], soa: SafeOperatingArea,
                    timeout_s: float, name: str = "smu", kind: str = "smu") -> Any:
    """An instrument of ``kind`` (``smu``, ``temperature``) from a driver registered in
    ``labctl.instruments``; DriverError on any failure, or when it lacks what that kind offers."""
    known = registered(INSTRUMENT_GROUP)
    if driver not in known:
        raise DriverError(f"no instrument driver {driver!r} is installed (entry point group {INSTRUMENT_GROUP}); "
                          f"installed: {', '.join(sorted(known)) or 'none'}")
    try:
        instrument = known[driver].load()(resource=resource, options=dict(options), soa=soa, timeout_s=timeout_s,
                                          name=name)
    except DriverError:
        raise
    except Exception as err:  # noqa: BLE001 - a third-party driver failing: say which and why
        raise DriverError(f"instrument driver {driver!r} could not open {resource}: {type(err).__name__}: {err}"
                          ) from None
    missing = [member for member in MEMBERS_BY_KIND[kind] if not hasattr(instrument, member)]
    if missing:
        close = getattr(instrument, "close", None)
        if callable(close):
            close()
        raise DriverError(f"instrument driver {driver!r} returned a {type(instrument).__name__} without "
                          f"{', '.join(missing)}: it is not a {'temperature controller' if kind == 'temperature' else 'SMU'}")
    return instrument


def driver_origin(point: EntryPoint) -> str:
    """Which installed package registered a driver, and its version."""
    dist = point.dist
    return f"{dist.name} {dist.version}" if dist is not None else point.value


def unknown_driver_message(driver: str) -> str | None:
    """None when ``driver`` is registered, else what to say (the names that are)."""
    known = board_drivers()
    if driver in known:
        return None
    return (f"no board driver {driver!r} is installed (entry point group {BOARD_GROUP}); "
            f"installed: {', '.join(sorted(known)) or 'none'}")


def open_board(driver: str, *, resource: str | None, options: dict[str, Any], soa: SafeOperatingArea,
               timeout_s: float) -> ChipBoard:
    """Load the named driver's factory and open a board with it; DriverError on any failure."""
    message = unknown_driver_message(driver)
    if message is not None:
        raise DriverError(message)
    point = board_drivers()[driver]
    try:
        factory = point.load()
    except Exception as err:  # a third-party package failing to import: say which and why
        raise DriverError(f"board driver {driver!r} ({point.value}) failed to load: {type(err).__name__}: {err}"
                          ) from None
    try:
        board = factory(resource=resource, options=dict(options), soa=soa, timeout_s=timeout_s)
    except DriverError:
        raise
    except (TypeError, ValueError, OSError) as err:
        raise DriverError(f"board driver {driver!r} could not open: {type(err).__name__}: {err}") from None
    missing = missing_members(board)
    if missing:
        close = getattr(board, "close", None)
        if callable(close):
            close()
        raise DriverError(f"board driver {driver!r} returned a {type(board).__name__} without "
                          f"{', '.join(missing)}: it does not implement labctl_drivers.interface.ChipBoard")
    return board
