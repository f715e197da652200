"""A campaign file: which chips, which protocols, in what order.

::

    name = "overnight"
    chips = ["chip1", "chip2"]

    [[stage]]
    name = "calibrate"
    protocol = "calibrate"          # a built-in's name or a protocol file (relative to this file)
    fresh = true

    [[stage]]
    name = "drift"
    protocol = "drift"
    after = ["calibrate"]           # on the same chip
    drift = { duration_s = 43200, reads = 60, temperatures_k = [300, 330] }

Every chip runs every stage (a stage's own ``chips`` narrows that); ``after`` orders the
stages of one chip, and chips run side by side. A task is ``<chip>/<stage>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from labctl.errors import UsageError
from labctl.names import is_chip_name

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class Stage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    name: str = Field(pattern=NAME)
    protocol: str = Field(min_length=1)  # a built-in's name or a file
    after: tuple[str, ...] = ()
    chips: tuple[str, ...] | None = None  # default: the campaign's
    fresh: bool = False
    drift: dict[str, Any] | None = None  # options over the protocol's [drift], as `labctl drift` takes them
    maintain: dict[str, Any] | None = None


class Campaign(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    name: str = Field(pattern=NAME)
    chips: tuple[str, ...] = Field(min_length=1)
    stage: tuple[Stage, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Campaign:
        bad = [chip for chip in self.chips if not is_chip_name(chip)]
        if bad:
            raise ValueError(f"chips: {bad[0]!r} is not a chip name")
        if len(set(self.chips)) != len(self.chips):
            raise ValueError("chips: a chip is listed twice")
        names = [stage.name for stage in self.stage]
        if len(set(names)) != len(names):
            raise ValueError(f"stage: two stages are named {next(n for n in names if names.count(n) > 1)!r}")
        for stage in self.stage:
            unknown = [name for name in stage.after if name not in names]
            if unknown:
                raise ValueError(f"stage {stage.name!r}: after names no stage {unknown[0]!r}")
            outside = [chip for chip in stage.chips or () if chip not in self.chips]
            if outside:
                raise ValueError(f"stage {stage.name!r}: chip {outside[0]!r} is not in the campaign's chips")
        _order(self.stage)  # raises on a cycle
        return self


@dataclass(frozen=True)
class Task:
    """One stage on one chip: what a worker that owns the chip runs."""

    campaign: str
    chip: str
    stage: Stage
    protocol_path: str  # a built-in's name, or the file resolved against the campaign file
    after: tuple[str, ...]  # the ids of the tasks on this chip it waits for
    submission: str = ""  # which `campaign run` this is: tonight's runs are not last night's

    @property
    def id(self) -> str:
        return f"{self.chip}/{self.stage.name}"

    @property
    def resource(self) -> str:
        return chip_resource(self.chip)


def chip_resource(chip: str) -> str:
    """The Dask worker resource that stands for holding a chip: a worker owning it
    advertises one, and a task asks for one, so two tasks never hold a chip together."""
    return f"chip:{chip}"


def _order(stages: tuple[Stage, ...]) -> list[Stage]:
    """The stages in an order that respects ``after``; a cycle is named."""
    by_name = {stage.name: stage for stage in stages}
    done: list[Stage] = []
    visiting: list[str] = []

    def visit(name: str) -> None:
        if any(stage.name == name for stage in done):
            return
        if name in visiting:
            cycle = " -> ".join([*visiting[visiting.index(name):], name])
            raise ValueError(f"stage order has a cycle: {cycle}")
        visiting.append(name)
        for before in by_name[name].after:
            visit(before)
        visiting.pop()
        done.append(by_name[name])

    for stage in stages:
        visit(stage.name)
    return done


def load_campaign(path: str | Path) -> tuple[Campaign, list[Task]]:
    """The campaign and its tasks in an order that respects every ``after``; any problem is one
    ``UsageError`` line naming the file."""
    from labctl.runs.protocol import describe_validation_error, read_toml

    source = Path(path)
    _, data = read_toml(source, "campaign")
    try:
        campaign = Campaign.model_validate(data)
    except ValidationError as err:
        raise UsageError(f"{source}: {describe_validation_error(err)}") from None
    tasks = []
    for stage in _order(campaign.stage):
        protocol = stage.protocol
        if "/" in protocol or protocol.endswith(".toml"):
            protocol = str((source.parent / protocol).resolve())
        for chip in stage.chips or campaign.chips:
            after = tuple(f"{chip}/{name}" for name in stage.after if chip in (_stage(campaign, name).chips
                                                                              or campaign.chips))
            tasks.append(Task(campaign.name, chip, stage, protocol, after))
    return campaign, tasks


def _stage(campaign: Campaign, name: str) -> Stage:
    return next(stage for stage in campaign.stage if stage.name == name)
