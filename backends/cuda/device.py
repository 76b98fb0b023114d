"""Moving a run's buffers to the GPU and back, and calling the host functions.

numpy buffers are copied to the device and what a pass writes is copied back
into them; device arrays are used in place, and their results stay on the
device.  A backward pass reuses the device copies that the forward pass just
before it made of the same numpy arrays (value_and_grad runs them back to
back); a forward pass always copies (workspaces are reused).
"""
from __future__ import annotations

import contextlib
import sys

import numpy as np

from unfold.compiler import layout
from unfold.compiler.program import Layout, Program
from unfold.graph.runargs import host_array, is_device_array
from unfold.lang.errors import UnfoldError


def simulated() -> bool:
    from numba.cuda.core import config  # noqa: PLC0415 (numba-cuda: the optional extra)
    return bool(config.ENABLE_CUDASIM)


def require_device():
    """Raise a clear error unless a GPU or numba's CUDA simulator can run kernels."""
    from numba import cuda  # noqa: PLC0415
    if not simulated() and not cuda.is_available():
        raise UnfoldError("target='cuda' found no CUDA GPU (numba.cuda.is_available() is False): set "
                          "NUMBA_ENABLE_CUDASIM=1 to run the kernels in numba's CUDA simulator (slow, for "
                          "testing), or use target='cpu'")


class Kernels:
    """The generated module's host functions, called with buffers by name."""

    def __init__(self, module, args: dict, source: str):
        self.module, self.args, self.source = module, args, source
        self._resident: dict = {}
        if simulated():
            from .simulator import serialize_shared_allocation  # noqa: PLC0415 (only under the simulator)
            serialize_shared_allocation()

    def _call(self, name, T, B, trunc, bufs, stay=False):
        require_device()
        from numba import cuda  # noqa: PLC0415
        scalars = {"T": T, "B": B, "trunc": trunc}
        fresh = set(self.module.FRESH) if name == "forward" else set()
        dev, reuse = {}, (self._resident if name == "backward" else {})
        for a in self.args[name]:
            if a in scalars:
                continue
            x, kept = bufs[a], reuse.get(a)
            if not isinstance(x, np.ndarray):
                dev[a] = x
            elif a in fresh:  # written before it is read: no copy
                dev[a] = cuda.device_array(x.shape, x.dtype)
            else:
                dev[a] = kept[1] if kept is not None and kept[0] is x else cuda.to_device(x)
        with _simulator_pace():
            result = getattr(self.module, name)(*[scalars[a] if a in scalars else dev[a] for a in self.args[name]])
        if not stay:
            for a in self.module.WRITES[name]:
                if a in dev and isinstance(bufs[a], np.ndarray):
                    dev[a].copy_to_host(bufs[a])
        self._resident = {a: (bufs[a], d) for a, d in dev.items()} if name == "forward" else {}
        return result, dev

    def forward(self, T, B, trunc, bufs, device=False):
        """(the loss, the device buffers when the run is on device arrays)."""
        loss, dev = self._call("forward", T, B, trunc, bufs, stay=device)
        return loss, (dev if device else None)

    def backward(self, T, B, trunc, bufs, device=False):
        _, dev = self._call("backward", T, B, trunc, bufs, stay=device)
        return dev if device else None


def device_outputs(program: Program, dev: dict, bufs: dict, run) -> dict:
    """The forward pass's values as device arrays: views of its device buffers;
    a param-only value, the same at every step, is broadcast on the host."""
    views = {}
    for vid in program.outputs.values():
        b = program.places[vid].buffer
        views[b.name] = dev[b.name] if b.layout.timed else dev[b.name].copy_to_host()
    return _on_device(layout.outputs(program, views, run.tau, run.batch))


def _on_device(tree: dict) -> dict:
    """Host arrays of a dict copied to the device."""
    from numba import cuda  # noqa: PLC0415
    return {k: v if is_device_array(v) else cuda.to_device(np.ascontiguousarray(v)) for k, v in tree.items()}


def device_gradients(program: Program, d: dict, dev: dict, run) -> dict:
    """Gradients as device arrays.  Input gradients are the backward pass's
    device buffers; param and initial-state gradients (small, and summed over
    the first and last rows of a state's adjoint) come through the host."""
    host = dict(d)
    inputs = {}
    for b in program.buffers:
        if b.adjoint is None or b.adjoint.name not in dev:
            continue
        a = dev[b.adjoint.name]
        if b.layout is Layout.PARAM:
            host[b.adjoint.name] = host_array(a)
        elif b.layout is Layout.STATE:  # only the initial rows (t <= 0, t > T) are read
            rows = np.zeros(a.shape, a.dtype)
            rows[:b.depth], rows[run.tau + b.depth:] = host_array(a[:b.depth]), host_array(a[run.tau + b.depth:])
            host[b.adjoint.name] = rows
        elif b.layout in (Layout.INPUT, Layout.STATIC_INPUT):
            inputs[b.symbol] = a
            host[b.adjoint.name] = np.empty(0, a.dtype)   # stays on the device
    return _on_device({**layout.gradients(program, host, run), **inputs})


@contextlib.contextmanager
def _simulator_pace():
    """numba's simulator busy-waits on its threads at every barrier, handing them
    the GIL every 5 ms; a short switch interval, only while kernels run, is 5x faster."""
    if not simulated():
        yield
        return
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(old)
