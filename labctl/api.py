"""The Python API; the CLI is a thin layer over it.

``calibrate`` validates every input (chip, protocol, targets, data directory) before
it creates a run, so bad input never leaves a run behind; once the run exists, any
failure marks it ``failed`` with the reason and keeps what was measured.
"""

from __future__ import annotations

import getpass
import os
import platform
import socket
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from labctl_calibration.drift import SetPointNotReached
from labctl_calibration.readout import Readout
from labctl_calibration.targets import TargetError, check_targets, differential_pairs, ramp
from labctl_drivers.errors import DriverError
from labctl import __version__
from labctl.runs.budget import check_fits, estimate
from labctl.rigs.config import ChipSpec, resolve_chip
from labctl.errors import RunFailed, RunInterrupted, UsageError
from labctl.rigs.lock import chip_lock
from labctl.runs.outcome import CalibrationOutcome, acceptance_checks
from labctl.runs.protocol import LoadedProtocol, load_protocol
from labctl.redact import redact_all
from labctl.runs.recorder import ProgressCallback, StoreRecorder
from labctl.runs.records import CalibrationRecord, latest_record, save_record
from labctl.rigs.rig import Rig, open_rig
from labctl.runs.protocol import CalibrateProtocol
from labctl.runs.steps import StepContext, checkpoint, restore_context, run_steps
from labctl.store.query import resolve_run_id
from labctl.store.root import data_root
from labctl.store.run import Run, RunStore, utc_now
from labctl.runs.targets_file import read_targets

def check(
    chip: str = "chip0",
    *,
    seed: int | None = None,
    size: str | None = None,
    targets: str | Path | None = None,
    weights: str | Path | None = None,
    protocol: str | Path | None = None,
    config: str | Path | None = None,
    builtin: str = "calibrate",
    drift: dict[str, Any] | None = None,
    maintain: dict[str, Any] | None = None,
    network: dict[str, Any] | None = None,
    solve: dict[str, Any] | None = None,
) -> tuple[ChipSpec, LoadedProtocol, np.ndarray | None, np.ndarray | None]:
    """Everything a run checks before it touches an instrument: the chip, the protocol
    against the chip's limits, the targets or weights. Raises ``UsageError``; a schedule
    runs it when it is added, so a bad command line fails then, not at 22:00."""
    if targets is not None and weights is not None:
        raise UsageError("give --targets or --weights, not both")
    spec = resolve_chip(chip, seed=seed, size=size, config=config)
    if protocol is None and builtin == "calibrate":
        protocol = spec.config.calibrate_protocol  # the chip's own choice, when lab.toml makes one
    loaded = load_protocol(protocol, builtin=builtin)
    for step, overrides in (("drift", drift), ("maintain", maintain), ("network", network), ("solve", solve)):
        if overrides:
            loaded = _with_step_options(loaded, step, overrides)
    _check_protocol_limits(loaded, spec)
    user_targets = read_targets(targets) if targets is not None else None
    user_weights = read_targets(weights, "weights") if weights is not None else None
    return spec, loaded, user_targets, user_weights


def calibrate(
    chip: str = "chip0",
    *,
    seed: int | None = None,
    size: str | None = None,
    targets: str | Path | None = None,
    weights: str | Path | None = None,
    protocol: str | Path | None = None,
    data: str | Path | None = None,
    config: str | Path | None = None,
    fresh: bool = False,
    progress: ProgressCallback | None = None,
    keep_rig: list[Rig] | None = None,
    builtin: str = "calibrate",
    drift: dict[str, Any] | None = None,
    maintain: dict[str, Any] | None = None,
    network: dict[str, Any] | None = None,
    solve: dict[str, Any] | None = None,
    attachments: dict[str, bytes] | None = None,
    labels: dict[str, str] | None = None,
) -> CalibrationOutcome:
    """Calibrate ``chip`` and store the run; raises ``UsageError``, ``InstrumentFailure`` or ``RunFailed``.

    The newest calibration record of the chip is reused (read-out, stuck map) unless
    ``fresh``. ``keep_rig`` (tests) receives the rig, so a test can inspect the twin.
    ``attachments`` are files the run keeps beside its results (a validated model and its data).
    ``labels`` land in the manifest (a campaign's name and task: how a campaign finds its runs again).
    """
    started = time.perf_counter()
    spec, loaded, user_targets, user_weights = check(chip, seed=seed, size=size, targets=targets, weights=weights,
                                                     protocol=protocol, config=config, builtin=builtin, drift=drift,
                                                     maintain=maintain, network=network, solve=solve)
    store = RunStore(data_root(data))
    size_known = spec.rows is not None  # an in-process twin: its size is known before it is built
    if size_known:
        check_fits(estimate(loaded.protocol, spec.rows, spec.cols), loaded.source, store.root)

    with chip_lock(spec.name, f"labctl {loaded.protocol.name}", spec.resources) as lock, open_rig(spec) as rig:
        if keep_rig is not None:
            keep_rig.append(rig)
        rig.heater_on_exit = loaded.protocol.heater_on_exit
        spec = rig.spec  # now with the board's geometry
        target_matrix = _targets(loaded, spec, user_targets, targets, user_weights, weights)
        if not size_known:  # a board: its size is what it answered
            check_fits(estimate(loaded.protocol, spec.rows, spec.cols), loaded.source, store.root)
        if "network" in loaded.protocol.steps:
            _check_network_fits(rig, attachments or {}, loaded.protocol.network.chips)
        if "solve" in loaded.protocol.steps:
            _check_system_solvable(rig, loaded.protocol, attachments or {})
        store.check_writable()
        identity = rig.chip_identity
        adc = rig.board.adc()
        t0, temperature = rig.board.clock_and_temperature()
        measured_at = (loaded.protocol.drift.temperatures_k[0] if "settle" in loaded.protocol.steps
                       else temperature)  # a settle step brings the chip there before anything is measured
        record = None if fresh else latest_record(store, spec.name, (spec.rows, spec.cols), identity, measured_at)
        nominal = Readout(lsb_ua=adc.lsb_ua, read_voltage=loaded.protocol.write_verify.read_voltage)
        contexts: list[StepContext] = []

        def prepare(run: Run) -> None:
            for name, content in (attachments or {}).items():
                run.write_bytes(name, content)
            recorder = StoreRecorder(run, array=0, t0_s=t0, cols=spec.cols, progress=progress)
            contexts.append(StepContext(run, rig, loaded.protocol, target_matrix, recorder, nominal, record,
                                        temperature, signed=user_weights is not None))
            checkpoint(contexts[0])

        store.create_run(spec.name, {**_provenance(spec, loaded, rig, targets or weights, record),
                                     "lock": {"took_over_stale": lock["took_over"]}, "labels": dict(labels or {})},
                         prepare)
        return _execute(contexts[0], started)


def resume(run_id: str, *, data: str | Path | None = None, config: str | Path | None = None,
           progress: ProgressCallback | None = None, keep_rig: list[Rig] | None = None) -> CalibrationOutcome:
    """Continue an interrupted run from its last completed step (a drift step from its last read).

    The chip must still be the one the run started on: a real rig or a twin served by
    ``labctl sim serve``; a twin that lived inside the killed process is gone with it.
    """
    started = time.perf_counter()
    store = RunStore(data_root(data))
    run = Run.open(store, resolve_run_id(store.fs, run_id, store.fs.display()))
    if run.manifest.get("status") == "completed":
        raise UsageError(f"run {run_id} is already completed")
    if run.manifest.get("chip_spec", {}).get("twin") is not None:
        raise UsageError(f"run {run_id} ran on a twin inside its own process, which ended with it: "
                         "nothing to resume (serve the twin with 'labctl sim serve' for resumable runs)")
    protocol = CalibrateProtocol.model_validate(run.manifest["protocol"]["effective"])
    spec = resolve_chip(run.chip, config=config)
    with chip_lock(spec.name, f"labctl resume {run_id}", spec.resources), open_rig(spec) as rig:
        if keep_rig is not None:
            keep_rig.append(rig)
        rig.heater_on_exit = protocol.heater_on_exit
        ctx = restore_context(run, rig, protocol, progress)
        run.manifest["status"] = "running"
        run.manifest.update(pid=os.getpid(), host=socket.gethostname())
        run.manifest.setdefault("resumed_utc", []).append(utc_now())
        try:
            run.clear_stale_temporaries()
            run.hold_reserve()
            run.write_manifest()
        except OSError as err:
            raise UsageError(f"run {run_id}: cannot resume in {str(store.root)!r}: {_storage_failure(err)}") from None
        return _execute(ctx, started)


def resumable_run(chip: str, protocol_name: str, data: str | Path | None = None) -> str:
    """The newest unfinished run of this protocol on this chip (for ``drift --resume``)."""
    store = RunStore(data_root(data))
    for run_id, manifest in store.runs_newest_first(chip):
        if (manifest.get("status") != "completed"
                and manifest.get("protocol", {}).get("effective", {}).get("name") == protocol_name):
            return run_id
    raise UsageError(f"no unfinished {protocol_name} run of {chip} to resume in {store.fs.display()!r}")


def _execute(ctx: StepContext, started: float) -> CalibrationOutcome:
    run = ctx.run
    try:
        run_steps(ctx)
        checks = acceptance_checks(ctx.figures, ctx.protocol.acceptance)
        if all(check.passed for check in checks):
            _save_record(ctx)  # only a run that met its acceptance leaves a record later runs build on
    except (DriverError, SetPointNotReached) as err:
        run.fail("failed", str(err))
        raise RunFailed(f"run {run.id} failed: {err} (labctl resume {run.id} continues it)") from err
    except OSError as err:
        reason = _storage_failure(err)
        recorded = run.fail("failed", reason)
        raise RunFailed(f"run {run.id} failed: {reason}; " + (
            f"what was stored is intact and 'labctl resume {run.id}' continues it once there is room"
            if recorded else "its manifest could not be marked failed either; what was stored is intact")) from err
    except KeyboardInterrupt as err:
        run.fail("aborted", "interrupted (Ctrl-C or SIGTERM)")
        how = ("it ran on a twin inside this process, which is gone: start a new run"
               if ctx.rig.twin is not None else f"'labctl resume {run.id}' continues it")
        raise RunInterrupted(f"run {run.id} interrupted and marked aborted, the rig left safe; {how}") from err
    except BaseException as err:
        run.fail("failed", repr(err))
        raise
    outcome = CalibrationOutcome(run.id, run.chip, str(run.store.root), ctx.write_verify, checks, ctx.figures,
                                 ctx.readout_source, time.perf_counter() - started, ctx.temperature_k,
                                 ctx.protocol.name, ctx.rig.link_stats())
    summary = outcome.summary()
    run.finish("completed", summary=summary, acceptance=summary["acceptance"], passed=outcome.passed)
    return outcome


def _storage_failure(err: OSError) -> str:
    where = f" ({err.filename})" if getattr(err, "filename", None) else ""
    return f"cannot write to the data directory: {err.strerror or err}{where}"


def run_drift(chip: str = "chip0", *, duration_s: float | None = None, reads: int | None = None,
              temperatures_k: tuple[float, ...] | None = None, **options: Any) -> CalibrationOutcome:
    """The drift protocol (built-in ``drift`` unless ``protocol=``), with these options over its own."""
    overrides = {key: value for key, value in
                 (("duration_s", duration_s), ("reads", reads), ("temperatures_k", temperatures_k)) if value is not None}
    return calibrate(chip, builtin="drift", drift=overrides, **options)


def run_maintain(chip: str = "chip0", *, every_s: float | None = None, until_s: float | None = None,
                 refresh: bool | None = None, **options: Any) -> CalibrationOutcome:
    """The maintenance protocol (built-in ``maintain`` unless ``protocol=``), with these options over its own."""
    overrides = {key: value for key, value in
                 (("every_s", every_s), ("until_s", until_s), ("refresh", refresh)) if value is not None}
    return calibrate(chip, builtin="maintain", maintain=overrides, **options)


def run_validate(chip: str = "chip0", *, model: str | Path | None = None, dataset: str | Path | None = None,
                 at_s: tuple[float, ...] | None = None, maintain: bool | None = None, samples: int | None = None,
                 model_seed: int = 0, noise_model: str | Path | None = None, noise_at_s: float = 0.0,
                 copies: int | None = None, with_chips: tuple[str, ...] = (), clip_sigmas: float | None = None,
                 **options: Any) -> CalibrationOutcome:
    """A network on the chip (built-in ``validate`` unless ``protocol=``): ``model`` and
    ``dataset`` are .npz files; without them, the digits example is trained here (seed
    ``model_seed``; with ``noise_model``, an export-model file, trained with the chip's
    noise as it will be ``noise_at_s`` after programming; each layer clipped to
    ``clip_sigmas`` of its weights' σ) and its held-out quarter is the test data.
    ``with_chips`` names further chips the tiles may use once this one's arrays are full."""
    from labctl.runs.validation import DATASET_FILE, MODEL_FILE

    overrides = {key: value for key, value in (("at_s", at_s), ("maintain", maintain), ("samples", samples),
                                               ("copies", copies)) if value is not None}
    if with_chips:
        if len(set(with_chips)) != len(with_chips) or chip in with_chips:
            raise UsageError(f"--with {','.join(with_chips)}: name each other chip once, and not {chip} itself")
        for name in with_chips:
            resolve_chip(name, config=options.get("config"))  # an unknown chip is refused before anything opens
        overrides["chips"] = tuple(with_chips)
    for flag, value in (("--noise-model", noise_model), ("--clip-sigmas", clip_sigmas)):
        if value is not None and model is not None:
            raise UsageError(f"{flag} trains the built-in example: with --model, train with your own tools")
    noise = None
    if noise_model is not None:
        noise = _training_noise(noise_model, options.get("protocol"), noise_at_s, copies or 1)
    if clip_sigmas is not None and not clip_sigmas > 0:
        raise UsageError(f"--clip-sigmas {clip_sigmas}: must be positive")
    model_bytes, data_bytes = _network_files(model, dataset, model_seed, noise, clip_sigmas)
    return calibrate(chip, builtin="validate", network=overrides,
                     attachments={MODEL_FILE: model_bytes, DATASET_FILE: data_bytes}, **options)


def run_solve(chip: str = "loop0", *, matrix: str | Path | None = None, rhs: str | Path | None = None,
              example: str | None = None, rows: int | None = None, columns: int | None = None,
              refine_steps: int | None = None, **options: Any) -> CalibrationOutcome:
    """A·X = B on the chip's closed loop (built-in ``solve`` unless ``protocol=``): ``matrix``
    and ``rhs`` are .npy files; without them, the protocol's example system (``example``,
    ``rows``, ``columns`` override it)."""
    overrides = {key: value for key, value in (("example", example), ("size", rows), ("rhs_columns", columns),
                                               ("refine_steps", refine_steps)) if value is not None}
    if (matrix is None) != (rhs is None):
        raise UsageError("give --matrix and --rhs together, or neither for the built-in example")
    if matrix is not None and (example is not None or rows is not None or columns is not None):
        raise UsageError("--example, --rows and --columns shape the built-in example: not with --matrix")
    params = _with_step_options(load_protocol(options.get("protocol"), builtin="solve"), "solve",
                                overrides).protocol.solve
    return calibrate(chip, builtin="solve", solve=overrides, attachments=_system_files(matrix, rhs, params),
                     **options)


def _system_files(matrix: str | Path | None, rhs: str | Path | None, params) -> dict[str, bytes]:
    from labctl.runs.solving import load_system, system_bytes

    if matrix is None:
        from labctl_calibration.systems import example

        return system_bytes(*example(params.example, params.size, params.condition, params.rhs_columns, params.seed))
    try:
        contents = Path(matrix).read_bytes(), Path(rhs).read_bytes()
    except OSError as err:
        raise UsageError(f"cannot read {err.filename!r}: {err.strerror}") from None
    return system_bytes(*load_system(*contents, (f"matrix file {str(matrix)!r}", f"rhs file {str(rhs)!r}")))


def _check_system_solvable(rig: Rig, protocol: CalibrateProtocol, attachments: dict[str, bytes]) -> None:
    """A board without a closed loop, or a system its loop cannot settle on, is refused before a run starts."""
    from labctl_calibration.closed_loop import UnsolvableMatrix, check_system
    from labctl.runs.solving import MATRIX_FILE, RHS_FILE, load_system

    if MATRIX_FILE not in attachments:
        raise UsageError("the solve step needs a system: run it with 'labctl solve'")
    if "IMVM" not in rig.board.capabilities():
        raise UsageError(f"{rig.spec.name}: its board lists no closed loop (IMVM) in CHIP:CAP?; the sram-64 twin "
                         "has one (built-in chip loop0)")
    geometry = rig.board.geometry()
    if geometry.arrays < 2 or geometry.rows != geometry.cols:
        raise UsageError(f"{rig.spec.name}: the closed loop needs two square arrays, the board has "
                         f"{geometry.arrays} of {geometry.rows}x{geometry.cols}")
    a, _ = load_system(attachments[MATRIX_FILE], attachments[RHS_FILE], ("the matrix", "the right-hand sides"))
    try:
        check_system(a, geometry.rows, protocol.solve)
    except UnsolvableMatrix as err:
        raise UsageError(f"{rig.spec.name}: {err}") from None


def _training_noise(path: str | Path, protocol: str | Path | None, t_s: float, copies: int):
    """The noise a weight will carry: that of ``copies`` pairs (one unless ``--copies`` says:
    never less noise than the chip shows)."""
    import json

    from labctl_calibration.noise_aware import chip_weight_noise

    try:
        model = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UsageError(f"noise model {str(path)!r}: {getattr(err, 'strerror', None) or err}") from None
    params = load_protocol(protocol, builtin="validate").protocol.network
    try:
        return chip_weight_noise(model, params.low_us, params.high_us, t_s, copies=copies)
    except ValueError as err:
        raise UsageError(f"noise model {str(path)!r}: {err}") from None


def _network_files(model: str | Path | None, dataset: str | Path | None, seed: int,
                   noise=None, clip_sigmas: float | None = None) -> tuple[bytes, bytes]:
    """The model and test data as the run will keep them, checked before anything starts."""
    import io

    from labctl_calibration.network import Network
    from labctl.runs.validation import load_dataset

    if (model is None) != (dataset is None):
        raise UsageError("give --model and --dataset together, or neither for the built-in digits example")
    if model is None:
        from labctl_calibration.training import digits, train_mlp

        try:
            x_train, y_train, x_test, y_test = digits(seed)
        except ImportError as err:
            raise UsageError(str(err)) from None
        network = train_mlp(x_train, y_train, seed=seed, weight_noise=noise, clip_sigmas=clip_sigmas)
        buffer, data = io.BytesIO(), io.BytesIO()
        network.save(buffer)
        np.savez(data, x=x_test, y=y_test)
        return buffer.getvalue(), data.getvalue()
    try:
        model_bytes, data_bytes = Path(model).read_bytes(), Path(dataset).read_bytes()
    except OSError as err:
        raise UsageError(f"cannot read {err.filename!r}: {err.strerror}") from None
    try:
        network = Network.load(io.BytesIO(model_bytes), f"model file {str(model)!r}")
    except ValueError as err:
        raise UsageError(str(err)) from None
    load_dataset(data_bytes, network.inputs, f"dataset file {str(dataset)!r}")
    return model_bytes, data_bytes


def _check_network_fits(rig: Rig, attachments: dict[str, bytes], chips: tuple[str, ...]) -> None:
    """A network whose layers do not fit the chip (and the further ``chips``) is refused before a run starts."""
    import io
    from contextlib import ExitStack

    from labctl_calibration.chip_network import plan_tiles
    from labctl_calibration.network import Network
    from labctl.runs.validation import MODEL_FILE, open_further_chip

    if MODEL_FILE not in attachments:
        raise UsageError("the network step needs a model: run it with 'labctl validate'")
    geometry = rig.board.geometry()
    arrays = geometry.arrays
    with ExitStack() as stack:  # the further chips' geometry, each opened as the step will open it
        for name in chips:
            arrays += open_further_chip(name, rig, stack).board.geometry().arrays
    try:
        plan_tiles(Network.load(io.BytesIO(attachments[MODEL_FILE]), "the model"), arrays, geometry.rows,
                   geometry.cols)
    except ValueError as err:
        raise UsageError(f"{', '.join((rig.spec.name, *chips))}: {err}") from None


def _with_step_options(loaded: LoadedProtocol, step: str, overrides: dict[str, Any]) -> LoadedProtocol:
    """The protocol with a step's parameters changed from the command line, validated as the file's are."""
    from dataclasses import replace

    from pydantic import ValidationError

    from labctl.runs.protocol import describe_validation_error

    current = getattr(loaded.protocol, step)
    try:
        params = type(current)(**{**current.model_dump(), **overrides})
    except ValidationError as err:
        raise UsageError(f"{step} options: {describe_validation_error(err)}") from None
    if step not in loaded.protocol.steps:
        raise UsageError(f"{loaded.source}: the protocol has no {step} step")
    return replace(loaded, protocol=loaded.protocol.model_copy(update={step: params}))


def _save_record(ctx: StepContext) -> None:
    if not ctx.readout.calibrated:
        return
    stuck = ctx.stuck_map if ctx.stuck_map is not None else np.zeros(ctx.targets.shape, dtype=bool)
    save_record(ctx.run, CalibrationRecord(
        chip=ctx.run.chip, identity=ctx.rig.chip_identity, run_id=ctx.run.id, created_utc=utc_now(),
        temperature_k=ctx.temperature_k,
        geometry=ctx.targets.shape, readout_gain=np.asarray(ctx.readout.gain, dtype=float),
        readout_offset_lsb=np.asarray(ctx.readout.offset, dtype=float), stuck=stuck,
        mvm_slope=ctx.mvm_slope, mvm_intercept_ua=ctx.mvm_intercept_ua,
    ))


def _check_protocol_limits(loaded: LoadedProtocol, spec: ChipSpec) -> None:
    """Refuse, before anything starts, a protocol that would ask for more than the chip's
    safe operating area (the drivers would refuse it too, but only halfway through a run)."""
    p, safe, steps = loaded.protocol, spec.soa, set(loaded.protocol.steps)
    programs = steps & {"readout", "write_verify", "refine", "drift", "mvm"}  # the steps that program or read
    checks = [
        (bool(programs), "write_verify.set_max_mv", p.write_verify.set_max_mv, "set_max_mv", safe.set_max_mv),
        (bool(programs), "write_verify.reset_max_mv", p.write_verify.reset_max_mv, "reset_max_mv",
         safe.reset_max_mv),
        (bool(programs), "write_verify.width_ns", p.write_verify.width_ns, "width_max_ns", safe.width_max_ns),
        (bool(programs), "write_verify.read_voltage", p.write_verify.read_voltage, "read_voltage_max_v",
         safe.read_voltage_max_v),
        ("health" in steps, "health.set_pulse_mv", p.health.set_pulse_mv, "set_max_mv", safe.set_max_mv),
        ("health" in steps, "health.reset_pulse_mv", p.health.reset_pulse_mv, "reset_max_mv", safe.reset_max_mv),
        ("health" in steps, "health.width_ns", p.health.width_ns, "width_max_ns", safe.width_max_ns),
        ("readout" in steps, "readout.read_voltage", p.readout.read_voltage, "read_voltage_max_v",
         safe.read_voltage_max_v),
        ("readout" in steps, "readout.read_voltage", p.readout.read_voltage, "smu_voltage_max_v",
         safe.smu_voltage_max_v),
        ("readout" in steps, "readout.current_limit_a", p.readout.current_limit_a, "smu_current_limit_max_a",
         safe.smu_current_limit_max_a),
    ]
    for applies, key, value, limit_name, limit in checks:
        if applies and value > limit:
            raise UsageError(f"{loaded.source}: {key} = {value:g} exceeds {spec.name}'s safe limit "
                             f"{limit_name} = {limit:g}")
    if "drift" in steps:
        for kelvin in p.drift.temperatures_k:
            if not safe.temperature_min_k <= kelvin <= safe.temperature_max_k:
                raise UsageError(f"{loaded.source}: drift.temperatures_k {kelvin:g} K is outside {spec.name}'s "
                                 f"safe range {safe.temperature_min_k:g}..{safe.temperature_max_k:g} K")


def _targets(loaded: LoadedProtocol, spec: ChipSpec, user: np.ndarray | None, source: Any,
             weights: np.ndarray | None = None, weights_source: Any = None) -> np.ndarray:
    shape = (spec.rows, spec.cols)
    t = loaded.protocol.targets
    if weights is not None:
        where = f"weights file {str(weights_source)!r}"
        try:
            matrix = differential_pairs(weights, shape, t.low_us, t.high_us)
        except TargetError as err:
            raise UsageError(f"{where}: {err}") from None
    elif user is None:
        matrix, where = ramp(shape, t.low_us, t.high_us, t.levels), f"{loaded.source} [targets]"
    else:
        matrix, where = user, f"targets file {str(source)!r}"
    try:
        return check_targets(matrix, shape, spec.window_us)
    except TargetError as err:
        raise UsageError(f"{where}: {err}") from None


def _provenance(spec: ChipSpec, loaded: LoadedProtocol, rig: Rig, targets: Any,
                record: CalibrationRecord | None) -> dict[str, Any]:
    return {
        "labctl_version": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "pid": os.getpid(),  # with host: tells a running run from one whose process died
        "user": _user(),
        "command": redact_all(sys.argv),
        "chip_spec": spec.describe(),
        "chip_identity": rig.chip_identity,
        "seed": spec.config.twin.seed if spec.config.twin else None,
        "preset": spec.config.twin.preset if spec.config.twin else None,
        "instruments": rig.snapshot(),
        "protocol": {"source": loaded.source, "sha256": loaded.sha256, "content": loaded.text,
                     "effective": loaded.protocol.model_dump(mode="json")},
        "targets": {"source": str(targets) if targets is not None else "protocol pattern"},
        "starting_from_record": record.run_id if record is not None else None,
    }


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
