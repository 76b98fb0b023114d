"""How the CUDA target runs the time loops: its two schedules and their shapes.

"persistent" keeps each pass's time loops inside one kernel (a block per
slice of sequences, per-step weights in shared memory while they fit),
"stepwise" launches each stage once per step over the whole GPU, for weights
too big for every block to re-read each step.  `schedule_for` picks ("auto")
by the loops' weight bytes; docs/cuda.md has the performance model.
"""
from __future__ import annotations

import numpy as np

from unfold.compiler.program import Program
from unfold.compiler.stages import Fused, MatMul

SCHEDULES = ("auto", "persistent", "stepwise")
SHARED_BYTES = 40 * 1024    # weights copied to shared memory up to this size (48 KiB static limit)
PERSISTENT_BYTES = 1 << 20  # "auto": per-step weights up to this stay in a persistent kernel (L1/L2)


def loop_matmuls(program: Program) -> list[MatMul]:
    return [st for loop in program.loops for st in loop.stages if isinstance(st, MatMul)]


def schedule_for(program: Program, dtype, schedule: str = "auto") -> str:
    """"persistent" while the loops' weights are small enough for every block to
    re-read each step from the caches; "stepwise" beyond."""
    if schedule != "auto":
        return schedule
    size = np.dtype(dtype).itemsize
    weights = sum(st.weights.rows * st.weights.cols * size for st in loop_matmuls(program))
    return "persistent" if weights <= PERSISTENT_BYTES else "stepwise"


def width(program: Program) -> int:
    """The widest stage of the time loops: threads per sequence."""
    sizes = [1]
    for loop in program.loops:
        for st in loop.stages:
            if isinstance(st, Fused):
                sizes.append(st.size)
            elif isinstance(st, MatMul):
                sizes += [st.weights.rows, st.weights.cols]
    return max(sizes)


def plan_shared(program: Program, dtype, transposed: bool) -> dict[str, tuple]:
    """Per-step weights into shared memory, first come first served, while they
    fit: weight buffer name -> its shape."""
    shared, room = {}, SHARED_BYTES
    for st in loop_matmuls(program):
        size = st.weights.rows * st.weights.cols * np.dtype(dtype).itemsize
        if size <= room:
            room -= size
            w = st.weights.WT if transposed else st.weights.W
            shared[w.name] = w.shape
    return shared


def step_grid(st, adjoint: bool) -> str:
    """The launch shape of a stepwise kernel: output tiles of a matmul, or
    enough threads for every (sequence, unit) pair of the stage."""
    if isinstance(st, MatMul):
        cols = st.weights.cols if adjoint else st.weights.rows
        return f"_tiles(B, {cols}), TILE_BLOCK"
    n = st.size if isinstance(st, Fused) else 1
    return f"_spread(B * {n}), STEP_THREADS"
