"""The solve step: A·X = B through the board's closed loop, judged against float64 and a digital solver.

The run holds its own copy of the system (``matrix.npy``, ``rhs.npy``, written before it
starts), so what was solved is always next to its results. The step programs each block
of the recursion onto the loop's two arrays, calibrates the loop on it, solves every
column of B, and stores one ``solve`` row per column.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from labctl.errors import UsageError
from labctl.runs.steps import StepContext

MATRIX_FILE, RHS_FILE = "matrix.npy", "rhs.npy"


def load_system(matrix: bytes | str, rhs: bytes | str, where: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """A (n x n) and B (n, or n x k) from .npy files; UsageError naming the file and what is wrong."""
    arrays = []
    for content, name in ((matrix, where[0]), (rhs, where[1])):
        try:
            loaded = np.load(io.BytesIO(content) if isinstance(content, bytes) else content, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise UsageError(f"{name}: not a .npy array: {err}") from None
        if not isinstance(loaded, np.ndarray) or not np.issubdtype(loaded.dtype, np.number) \
                or np.iscomplexobj(loaded):
            raise UsageError(f"{name}: must hold a real numeric array")
        if not np.all(np.isfinite(loaded)):
            raise UsageError(f"{name}: holds a value that is not finite")
        arrays.append(loaded.astype(float))
    a, b = arrays
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 1:
        raise UsageError(f"{where[0]}: the matrix must be square, it is {'x'.join(map(str, a.shape))}")
    if b.ndim == 1:
        b = b[:, None]
    if b.ndim != 2 or b.shape[0] != a.shape[0] or b.shape[1] < 1:
        raise UsageError(f"{where[1]}: the right-hand sides must have {a.shape[0]} rows (one column each), "
                         f"they are {'x'.join(map(str, b.shape))}")
    return a, b


def system_bytes(a: np.ndarray, b: np.ndarray) -> dict[str, bytes]:
    files = {}
    for name, array in ((MATRIX_FILE, a), (RHS_FILE, b)):
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(array, dtype=float))
        files[name] = buffer.getvalue()
    return files


def run_solve(ctx: StepContext) -> dict[str, Any]:
    from labctl_calibration.closed_loop import ClosedLoopSolver, UnsolvableMatrix
    from labctl_calibration.linear_solve import solve_system
    from labctl_calibration.write_verify import WriteVerify

    params, board = ctx.protocol.solve, ctx.rig.board
    a, b = load_system(ctx.run.read_bytes(MATRIX_FILE), ctx.run.read_bytes(RHS_FILE),
                       (f"run {ctx.run.id} {MATRIX_FILE}", f"run {ctx.run.id} {RHS_FILE}"))
    verify = WriteVerify(board, ctx.readout, ctx.protocol.write_verify, ctx.recorder)
    try:
        solver = ClosedLoopSolver(board, verify, params)
        result = solve_system(solver, a, b, progress=ctx.recorder.progress)
    except UnsolvableMatrix as err:
        raise UsageError(f"{ctx.rig.spec.name}: {err}") from None
    finally:
        board.array = 0  # as every other step expects the board
    chip, digital = result.chip_errors, result.digital_errors
    n = b.shape[1]
    ctx.run.table("solve").append({
        "column": np.arange(n, dtype=np.int32), "rows": np.full(n, a.shape[0], dtype=np.int32),
        "leaves": np.full(n, len(result.leaves), dtype=np.int16),
        "refine_steps": np.full(n, params.refine_steps, dtype=np.int16), "settled": result.settled,
        "chip_rel_error": chip, "digital_rel_error": digital, "chip_vs_digital": chip / np.maximum(digital, 1e-300),
        "board_s": result.board_s, "solves": result.attempts.astype(np.int32)})
    settled = result.settled
    mean = (lambda v: float(np.mean(v[settled]))) if settled.any() else (lambda v: None)
    worst = (lambda v: float(np.max(v[settled]))) if settled.any() else (lambda v: None)
    return {
        "rows": int(a.shape[0]), "columns": int(n), "condition_number": float(np.linalg.cond(a)),
        "leaves": len(result.leaves), "refine_steps": params.refine_steps, "repeats": params.repeats,
        "settled_fraction": float(settled.mean()),
        "chip_rel_error_mean": mean(chip), "chip_rel_error_max": worst(chip),
        "digital_rel_error_mean": mean(digital), "digital_rel_error_max": worst(digital),
        "chip_vs_digital": (mean(chip) / mean(digital)) if settled.any() and mean(digital) > 0 else None,
        "board_s_per_rhs": float(result.board_s.mean()), "glue_board_s": result.glue_board_s,
        "programming_board_s": result.programming_board_s,
        "programmings": [leaf.figures for leaf in result.leaves],
    }
