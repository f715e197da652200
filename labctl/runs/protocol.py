"""Run protocols as data: TOML files validated into typed models.

Built-in protocols live in the repository's ``protocols/`` folder and are shipped
inside the wheel as ``labctl/_protocols``; a user's protocol is any file of the same
shape given with ``--protocol``.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from labctl_calibration.chip_network import ChipNetworkParams
from labctl_calibration.closed_loop import SolveParams
from labctl_calibration.drift import DriftParams
from labctl_calibration.health import HealthParams
from labctl_calibration.maintain import MaintainParams
from labctl_calibration.mvm import MvmParams
from labctl_calibration.read_noise import ReadNoiseParams
from labctl_calibration.refine import RefineParams
from labctl_calibration.readout_calibration import ReadoutCalibrationParams
from labctl_calibration.write_verify import WriteVerifyParams
from labctl.errors import UsageError

STEPS = ("settle", "health", "readout", "read_noise", "write_verify", "refine", "mvm", "maintain", "network",
         "solve", "drift")


class TargetPattern(BaseModel):
    """The default target matrix, used unless the user gives ``--targets``."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    pattern: Literal["ramp"] = "ramp"
    low_us: float = Field(2.0, ge=0)
    high_us: float = Field(20.0, gt=0)
    levels: int = Field(8, ge=1, le=4096)

    @model_validator(mode="after")
    def _ordered(self) -> TargetPattern:
        if self.low_us > self.high_us:
            raise ValueError(f"low_us ({self.low_us}) exceeds high_us ({self.high_us})")
        return self


class Acceptance(BaseModel):
    """Limits that decide the exit code: 0 when all hold, 1 otherwise."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    min_converged_fraction: float = Field(0.93, ge=0, le=1)  # judged on a final read, through 1/f read noise
    max_error_sigma_us: float = Field(1.0, gt=0)  # IBM's iterative programming on PCM hardware: 0.45-1.08 µS
    max_stuck_fraction: float = Field(0.02, ge=0, le=1)
    max_readout_residual_lsb: float | None = Field(None, gt=0)  # absolute; unset: judged against the floor instead
    max_readout_residual_vs_floor: float = Field(1.5, gt=0)  # fit residual / disagreement of two looks at one cell
    max_mvm_worst_error_fs: float = Field(0.03, gt=0)
    max_drift_compensated_error_fs: float = Field(0.03, gt=0)  # worst MVM error at the end of the reference segment
    max_network_accuracy_drop_points: float = Field(5.0, ge=0)  # on-chip accuracy below the float model's, at once
    max_solve_error_vs_digital: float = Field(1.5, gt=0)  # closed-loop error over the digital solver's at chip precision


class CalibrateProtocol(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    name: str
    description: str = ""
    steps: tuple[Literal["settle", "health", "readout", "read_noise", "write_verify", "refine", "mvm", "maintain",
                         "network", "solve", "drift"], ...] = Field(("health", "readout", "read_noise", "write_verify", "refine", "mvm"),
                              min_length=1)  # a protocol that runs nothing is a mistake, not a run
    targets: TargetPattern = TargetPattern()
    health: HealthParams = HealthParams()
    readout: ReadoutCalibrationParams = ReadoutCalibrationParams()
    read_noise: ReadNoiseParams = ReadNoiseParams()
    write_verify: WriteVerifyParams = WriteVerifyParams()
    refine: RefineParams = RefineParams()
    mvm: MvmParams = MvmParams()
    maintain: MaintainParams = MaintainParams()
    network: ChipNetworkParams = ChipNetworkParams()
    solve: SolveParams = SolveParams()
    drift: DriftParams = DriftParams()
    heater_on_exit: Literal["hold", "off"] = "hold"  # what the temperature controller does when the run ends
    acceptance: Acceptance = Acceptance()

    @model_validator(mode="after")
    def _ordered_steps(self) -> CalibrateProtocol:
        order = [STEPS.index(step) for step in self.steps]
        if order != sorted(set(order)):
            raise ValueError(f"steps must be a subset of {list(STEPS)}, in that order, each once")
        return self


@dataclass(frozen=True)
class LoadedProtocol:
    protocol: CalibrateProtocol
    source: str
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def builtin_protocol_dir() -> Path:
    package = Path(__file__).resolve().parents[1]  # labctl/
    packaged = package / "_protocols"
    if packaged.is_dir():
        return packaged
    return package.parent / "protocols"  # a source checkout


def load_protocol(path: Path | str | None = None, builtin: str = "calibrate") -> LoadedProtocol:
    """Read and validate a protocol; every problem becomes one ``UsageError`` line."""
    if path is not None and _names_a_builtin(str(path)):
        path = builtin_protocol_dir() / f"{path}.toml"
    source = Path(path) if path is not None else builtin_protocol_dir() / f"{builtin}.toml"
    text, data = read_toml(source, "protocol")
    try:
        protocol = CalibrateProtocol.model_validate(data)
    except ValidationError as err:
        raise UsageError(f"{source}: {describe_validation_error(err)}") from None
    return LoadedProtocol(protocol, str(source), text)


def read_toml(source: Path, what: str) -> tuple[str, dict[str, Any]]:
    """A TOML file's text and tables; a missing, unreadable or malformed file is one
    ``UsageError`` line naming it (``what``: "protocol", "campaign")."""
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{what} file {str(source)!r} not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{what} file {str(source)!r} cannot be read: {err}") from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"{source}: invalid TOML: {err}") from None


def builtin_names() -> list[str]:
    return sorted(path.stem for path in builtin_protocol_dir().glob("*.toml"))


def _names_a_builtin(text: str) -> bool:
    """``calibrate-rram`` is the built-in of that name unless a file by that name exists here."""
    return "/" not in text and not text.endswith(".toml") and not Path(text).exists() and text in builtin_names()


def describe_validation_error(err: ValidationError) -> str:
    """The first problem as ``key.path: message``, and how many more there are."""
    problems = err.errors()
    first = problems[0]
    where = ".".join(str(part) if str(part).isprintable() else repr(part) for part in first["loc"]) or "(top level)"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
    return f"{where}: {message}{more}"
