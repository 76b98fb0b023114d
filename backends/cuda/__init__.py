"""Target "cuda": the step program printed as numba.cuda kernels and host code.

    fn = uf.compile(rec, target="cuda", schedule="auto")   # or "persistent", "stepwise"
    fn.ptx(cc=(9, 0))                                       # no GPU needed

The job is split by module: `kernels` prints kernel bodies (the shared stage
printer, with threads), `host` the launches and `emit`, `schedule` picks the
schedule and launch shapes, `device` moves buffers, `ptx` compiles PTX,
`prelude` is the text every generated module starts with, `simulator` fixes
numba's simulator for our kernels.  docs/cuda.md has the design.
"""
from __future__ import annotations

import numba.cuda  # noqa: F401  # pyflakes: ignore  (numba-cuda, the `cuda` extra: missing, the registry says so)

from unfold.compiler.backend import Backend

from . import device
from .host import emit
from .ptx import ptx
from .schedule import SCHEDULES


class CudaBackend(Backend):
    name = "cuda"
    options = {"schedule": SCHEDULES}
    device_arrays = True

    def emit(self, program, dtype, unroll=1, tau=None, schedule="auto"):
        return emit(program, dtype, unroll, tau, schedule)

    def load(self, module, args, source):
        return device.Kernels(module, args, source)

    def outputs(self, program, bufs, dev, run):
        if dev is None:
            return super().outputs(program, bufs, dev, run)
        return device.device_outputs(program, dev, bufs, run)

    def gradients(self, program, d, dev, run):
        if dev is None:
            return super().gradients(program, d, dev, run)
        return device.device_gradients(program, d, dev, run)

    def ptx(self, kernels, cc=(9, 0)):
        return ptx(kernels, cc)


BACKEND = CudaBackend()
