"""Which chip a name refers to, how to reach its instruments, and its safe operating area.

``lab.toml`` describes rigs, one table per chip::

    [chips.chip1]
    board = "TCPIP::127.0.0.1::5025::SOCKET"     # or "/dev/ttyACM0", "ASRL/dev/ttyACM0::INSTR"
    smu = "TCPIP::192.168.1.20::5025::SOCKET"
    temperature = "/dev/ttyUSB0"
    window_us = [0.0, 25.0]
    [chips.chip1.limits]
    set_max_mv = 2500

or, for a software twin in process, ``twin = { preset = "pcm", seed = 0, size = "256x256" }``.
The file is found at ``--config``, ``$LABCTL_CONFIG``, ``./lab.toml`` or the user's
config directory, in that order. With none, ``chip0`` is the built-in twin.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from labctl_drivers.safety import SafeOperatingArea
from labctl.errors import UsageError
from labctl.names import check_chip_name, is_chip_name

MAX_TWIN_SIDE = 1024
USER_CONFIG = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "labctl" / "lab.toml"


class Limits(BaseModel):
    """The chip's safe operating area; drivers refuse anything outside it."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    set_max_mv: int = Field(2500, gt=0, le=32767)
    reset_max_mv: int = Field(3500, gt=0, le=32767)
    width_max_ns: int = Field(1000, ge=10, le=10000)
    read_voltage_max_v: float = Field(0.3, gt=0, le=0.3)
    smu_voltage_max_v: float = Field(0.5, gt=0, le=210)
    smu_current_limit_max_a: float = Field(1e-3, gt=0, le=1.05)
    temperature_min_k: float = Field(250.0, gt=0)
    temperature_max_k: float = Field(400.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Limits:
        if self.temperature_min_k >= self.temperature_max_k:
            raise ValueError("temperature_min_k must be below temperature_max_k")
        return self

    def area(self) -> SafeOperatingArea:
        return SafeOperatingArea(**self.model_dump())


class TwinOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    preset: Literal["pcm", "rram", "sram-64"] = "pcm"
    seed: int = Field(0, ge=0)
    size: str | None = None  # ROWSxCOLS; the preset's geometry when absent
    params: dict[str, float] = {}  # the preset's numbers changed, e.g. { wire_ohm = 0.35, rtn_fraction = 0 }

    @model_validator(mode="after")
    def _known_params(self) -> TwinOptions:
        from labctl_sims.presets import customised

        customised(self.preset, self.params)  # a ValueError naming the parameter
        return self


class FieldDriver(BaseModel):
    """An instrument driven through the field's own driver class (``smu = { driver =
    "pymeasure:Keithley2450", resource = "TCPIP::...::SOCKET", options = { ... } }``,
    ``temperature = { driver = "qcodes:LakeshoreModel335", ... }``) or one registered in the
    ``labctl.instruments`` entry point group; ``options`` go to the class as keyword
    arguments (``read_termination``, ``timeout``...)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    driver: str = Field(pattern=r"^((pymeasure|qcodes):[A-Za-z_][A-Za-z0-9_.]*|[A-Za-z0-9][A-Za-z0-9_.-]*)$")
    resource: str = Field(min_length=1)
    options: dict[str, str | int | float | bool] = {}

    @model_validator(mode="after")
    def _installed(self) -> FieldDriver:
        if ":" not in self.driver:
            from labctl_drivers.plugins import INSTRUMENT_GROUP, registered

            known = registered(INSTRUMENT_GROUP)
            if self.driver not in known:
                raise ValueError(f"no instrument driver {self.driver!r} is installed (entry point group "
                                 f"{INSTRUMENT_GROUP}); installed: {', '.join(sorted(known)) or 'none'}")
        return self


class BoardDriver(BaseModel):
    """A board opened by a registered driver (``board = { driver = "arc2", options = { port =
    0, firmware = "fw.bin" } }``): labctl's own (``scpi``, ``arc2``, ``arc2-twin``) or one a
    lab's package registers in the ``labctl.boards`` entry point group."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    driver: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    resource: str | None = Field(None, min_length=1)
    options: dict[str, str | int | float | bool] = {}

    @model_validator(mode="after")
    def _installed(self) -> BoardDriver:
        from labctl_drivers.plugins import unknown_driver_message

        message = unknown_driver_message(self.driver)
        if message is not None:
            raise ValueError(message)
        return self

    @property
    def where(self) -> str:
        """What a lock on the rig must hold: the resource, else the driver and its options."""
        if self.resource:
            return self.resource
        options = ",".join(f"{key}={value}" for key, value in sorted(self.options.items()))
        return f"{self.driver}:{options}"


def _table(model: type[BaseModel], value: Any, hint: dict[str, str]) -> Any:
    """A table given for a field: validated as ``model``, its first fault said by name."""
    if not isinstance(value, dict):
        return value
    try:
        return model.model_validate(value)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise ValueError(f"{where}: {message}{hint.get(where, '')}" if where else message) from None


class ChipConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    twin: TwinOptions | None = None
    board: str | BoardDriver | None = None  # a resource (labctl's SCPI board) or a registered driver
    smu: str | FieldDriver | None = None  # a resource (labctl's 2450 driver) or a field driver
    temperature: str | FieldDriver | None = None  # a resource (labctl's 335 driver) or a field driver
    window_us: tuple[float, float] | None = None  # targets allowed, µS; default: a twin's preset range, else 0-25
    calibrate_protocol: str | None = None  # `labctl calibrate` without --protocol: a file or a built-in's name
    timeout_s: float = Field(2.0, gt=0, le=600)
    retries: int = Field(4, ge=0, le=20)  # a lost or damaged reply is asked for again this many times
    link_bytes_per_s: float = Field(1.0e6, gt=0)  # the board link's rate (USB CDC: about 1 MB/s), for the wire-time floor
    trace: str | None = None  # a file to log every exchange to
    limits: Limits = Limits()

    @field_validator("smu", "temperature", mode="before")
    @classmethod
    def _field_driver(cls, value: Any) -> Any:
        """A table is a field driver: say what is wrong with it, not that it is not a string."""
        return _table(FieldDriver, value, {"driver": " (expected 'pymeasure:<Class>', 'qcodes:<Class>' or a driver registered in labctl.instruments)"})

    @field_validator("board", mode="before")
    @classmethod
    def _board_driver(cls, value: Any) -> Any:
        return _table(BoardDriver, value, {})

    @model_validator(mode="after")
    def _reachable(self) -> ChipConfig:
        if (self.twin is None) == (self.board is None):
            raise ValueError("give either 'twin' (a software twin in process) or 'board' (a resource string)")
        if self.twin is not None and (self.smu or self.temperature):
            raise ValueError("an in-process twin brings its own SMU and temperature controller")
        if self.twin is not None and self.twin.size is not None:
            parse_size(self.twin.size, "twin.size")
        low, high = self.window_us or (0.0, 1.0)
        if not 0 <= low < high:
            raise ValueError(f"window_us {list(self.window_us or [])} must be [low, high] with 0 <= low < high")
        return self


class LabConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    chips: dict[str, ChipConfig] = {}


@dataclass(frozen=True)
class ChipSpec:
    """A chip resolved from configuration (and CLI overrides)."""

    name: str
    config: ChipConfig
    source: str  # the file it came from, or "built-in"
    rows: int | None = None  # known up front only for an in-process twin
    cols: int | None = None

    @property
    def resources(self) -> tuple[str, ...]:
        """Where its instruments are: what a lock on the rig must hold."""
        smu, temperature = (field.resource if isinstance(field, FieldDriver) else field
                            for field in (self.config.smu, self.config.temperature))
        board = self.config.board.where if isinstance(self.config.board, BoardDriver) else self.config.board
        return tuple(r for r in (board, smu, temperature) if r)

    @property
    def is_twin(self) -> bool:
        return self.config.twin is not None

    @property
    def window_us(self) -> tuple[float, float]:
        return window_of(self.config)

    @property
    def soa(self) -> SafeOperatingArea:
        return self.config.limits.area()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "geometry": [1, self.rows, self.cols] if self.rows else None,
                **self.config.model_dump(mode="json")}


DEFAULT_WINDOW_US = (0.0, 25.0)


def window_of(chip: ChipConfig) -> tuple[float, float]:
    """The conductances targets may ask for: as configured, else a twin's preset range."""
    if chip.window_us is not None:
        return chip.window_us
    if chip.twin is not None:
        from labctl_sims.presets import PRESETS

        return (0.0, PRESETS[chip.twin.preset].g_max_us)
    return DEFAULT_WINDOW_US


# chip0: the PCM twin every command defaults to; loop0: the sram-64 twin, whose board has a closed loop (labctl solve)
BUILTIN = LabConfig(chips={"chip0": ChipConfig(twin=TwinOptions()), "loop0": ChipConfig(twin=TwinOptions(preset="sram-64"))})


def parse_size(text: str, where: str = "--size") -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not match:
        raise UsageError(f"{where} {text!r}: expected ROWSxCOLS, for example 64x64")
    rows, cols = int(match[1]), int(match[2])
    if not (1 <= rows <= MAX_TWIN_SIDE and 1 <= cols <= MAX_TWIN_SIDE):
        raise UsageError(f"{where} {text!r}: rows and cols must be 1..{MAX_TWIN_SIDE}")
    return rows, cols


def find_config(explicit: str | Path | None = None) -> Path | None:
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise UsageError(f"config file {str(path)!r} not found")
        return path
    for candidate in (os.environ.get("LABCTL_CONFIG"), "lab.toml", USER_CONFIG):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def load_config(explicit: str | Path | None = None) -> tuple[LabConfig, str]:
    """The lab's configuration and where it came from; built-in chip0 is always there."""
    path = find_config(explicit)
    if path is None:
        return BUILTIN, "built-in"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"{path}: invalid TOML: {err}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"config file {str(path)!r} cannot be read: {err}") from None
    try:
        config = LabConfig.model_validate(data)
    except ValidationError as err:
        from labctl.runs.protocol import describe_validation_error

        raise UsageError(f"{path}: {describe_validation_error(err)}") from None
    except UsageError as err:  # raised by a validator (e.g. twin.size)
        raise UsageError(f"{path}: {err}") from None
    for name in config.chips:
        if not is_chip_name(name):
            check_chip_name(name, f"{path}: [chips.{name!r}]")
    chips = {**BUILTIN.chips, **config.chips}
    return LabConfig(chips=chips), str(path)


def configured_chip_names(explicit: str | Path | None = None) -> list[str]:
    """The chips ``--all`` means: those the lab.toml names (the built-in twins only when
    there is no lab.toml, or it names them itself)."""
    lab, source = load_config(explicit)
    if source == "built-in":
        return sorted(lab.chips)
    named = tomllib.loads(Path(source).read_text(encoding="utf-8")).get("chips", {})
    return sorted(named)


def resolve_chip(name: str, seed: int | None = None, size: str | None = None,
                 config: str | Path | None = None) -> ChipSpec:
    """The chip called ``name``, with twin-only overrides applied."""
    lab, source = load_config(config)
    chip = lab.chips.get(name)
    if chip is None:
        raise UsageError(f"unknown chip {name!r}: known chips are {', '.join(sorted(lab.chips))}")
    origin = "built-in" if name in BUILTIN.chips and chip == BUILTIN.chips[name] else source
    if (seed is not None or size is not None) and chip.twin is None:
        raise UsageError(f"--seed and --size apply to in-process twins; {name} is reached through {_board_text(chip.board)}")
    if chip.twin is None:
        return ChipSpec(name, chip, origin)
    twin = chip.twin
    if seed is not None:
        if seed < 0:
            raise UsageError(f"--seed {seed}: must be 0 or more")
        twin = twin.model_copy(update={"seed": seed})
    if size is not None:
        parse_size(size)
        twin = twin.model_copy(update={"size": size})
    chip = chip.model_copy(update={"twin": twin})
    rows, cols = _twin_geometry(twin)
    return ChipSpec(name, chip, origin, rows, cols)


def _board_text(board: str | BoardDriver | None) -> str:
    return board.where if isinstance(board, BoardDriver) else str(board)


def _twin_geometry(twin: TwinOptions) -> tuple[int, int]:
    if twin.size is not None:
        return parse_size(twin.size)
    from labctl_sims.presets import PRESETS

    _, rows, cols = PRESETS[twin.preset].geometry
    return rows, cols


def with_geometry(spec: ChipSpec, rows: int, cols: int) -> ChipSpec:
    return replace(spec, rows=rows, cols=cols)
