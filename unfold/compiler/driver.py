"""`compile`: a recurrence in, a fast callable out (forward and BPTT).

    fn = uf.compile(rec, target="cpu", dtype=np.float32)   # or "numpy", "cuda"
    out = fn(params, {"x": x})                       # like uf.evaluate
    loss, grads = fn.value_and_grad(params, {"x": x}, {"y": y})
    print(fn.source)                                  # the generated code

Every argument is checked before a kernel runs (names, shapes, dtype,
C-contiguity, lengths): numba does not bounds-check.  The step program and
the generated source are cached on disk under a hash of the canonical
recurrence, the options and the code generators (`cache_dir`, default
`$UNFOLD_CACHE_DIR` or the user cache dir), and numba caches its machine code
beside them, so a second process starts warm.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import pickle
import re
import threading
import warnings
from pathlib import Path

import numpy as np

from ..graph.runargs import RunArgs, is_device_array, to_host
from ..lang.errors import InputError, ModelError, UnfoldError
from ..lang.ir import Role
from ..lang.recurrence import Recurrence, canonical
from . import layout
from .backend import FLOATS, Backend, backend, check_options
from .cache import DiskCache, default_cache_dir
from .passes import lower

MODES = ("rolled", "unrolled")
VERSION = "2"   # of the generated code's conventions: a new one never reuses old cache entries


class Compiled:
    """A compiled recurrence; the kernels for runs with `lengths` are built on first use."""

    def __init__(self, rec: Recurrence, target: Backend, dtype, mode: str, unroll: int, cache: DiskCache,
                 options: dict):
        self.rec, self.backend, self.dtype = rec, target, np.dtype(dtype)
        self.target = target.name
        self.mode, self.unroll, self.cache, self.options = mode, unroll, cache, options
        self.cache_hits = 0   # modules loaded from the disk cache rather than generated
        self._kernels: dict = {}
        self._programs: dict = {}
        self._healed: set = set()   # kernels whose damaged numba cache was deleted once
        self._local = threading.local()

    @property
    def cache_dir(self) -> Path:
        return self.cache.dir

    # -- building --------------------------------------------------------------
    def program(self, masked: bool = False):
        """The step program, lowered once and kept on disk (lowering runs sympy;
        a warm start should not)."""
        if masked not in self._programs:
            name = f"unfold_{self.stem}_{self.key(masked, 'program')}.program"
            data = self.cache.read_bytes(name)
            program = pickle.loads(data) if data is not None else None
            if program is None:
                program = lower(self.rec, masked=masked)
                self.cache.write_bytes(name, pickle.dumps(program))
            self._programs[masked] = program
        return self._programs[masked]

    @property
    def stem(self) -> str:
        return re.sub(r"\W", "_", self.rec.name, flags=re.ASCII).strip("_")[:40] or "model"

    def key(self, masked: bool, tau) -> str:
        import numba  # noqa: PLC0415 (its version is part of what the code depends on)
        text = "\n".join([canonical(self.rec), self.target, self.dtype.name, self.mode, str(self.unroll),
                          str(masked), str(tau), repr(sorted(self.options.items())), VERSION,
                          numba.__version__, _code_version()])
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def kernels(self, masked: bool, tau: int):
        fixed = tau if self.mode == "unrolled" else None
        k = (masked, fixed)
        if k not in self._kernels:
            self._kernels[k] = self._build(masked, fixed)
        return self._kernels[k]

    def _build(self, masked: bool, tau: int | None):
        if not self.backend.generates_source:
            return self.backend.kernels(self.program(masked), self.dtype, self.unroll, tau, **self.options)
        name = f"unfold_{self.stem}_{self.key(masked, tau)}"
        source = self.cache.read_text(f"{name}.py")
        if source is None:
            source, args = self.backend.emit(self.program(masked), self.dtype, unroll=self.unroll, tau=tau,
                                             **self.options)
            source += f"\n#: each function's arguments, by buffer name\nARGS = {args!r}\n"
            self.cache.write_text(f"{name}.py", source)
        else:
            self.cache_hits += 1
        module = self.cache.import_module(name)
        return self.backend.load(module, module.ARGS, source)

    @property
    def source(self) -> str:
        """The generated code (for the numpy target: the step program it runs)."""
        return self.kernels(False, None if self.mode == "rolled" else 4).source

    def ptx(self, cc=(9, 0)) -> str:
        """PTX of every kernel (target "cuda"; needs no GPU)."""
        return self.backend.ptx(self.kernels(False, None if self.mode == "rolled" else 4), cc=cc)

    # -- running ---------------------------------------------------------------
    def workspace(self) -> dict:
        """Buffers reused across calls, one set per thread."""
        if not hasattr(self._local, "ws"):
            self._local.ws = {}
        return self._local.ws

    def _prepare(self, params, inputs, targets, init, lengths, tau, batch, need_targets=True, returned=False):
        """The checked run, its step program, its buffers, and whether it runs on
        device arrays (then the params and initial states, packed on the host,
        are copied there; the sequences stay put)."""
        device = self.backend.device_arrays and any(
            is_device_array(v) for tree in (params, inputs, targets, init) if tree for v in tree.values())
        if device:
            params, init = to_host(params), to_host(init)
        run = RunArgs.check(self.rec, params, inputs, targets, init, lengths, tau, batch, strict=True,
                            dtype=self.dtype, need_targets=need_targets, device=self.backend.device_arrays)
        program = self.program(run.mask is not None)
        fresh = layout.output_buffers(program) if returned else ()
        return run, program, layout.prepare(program, run, self.workspace(), fresh), device

    def __call__(self, params, inputs=None, targets=None, init=None, lengths=None, tau=None, batch=None):
        """Every state and intermediate [T, B, ...], and the loss: like `uf.evaluate`."""
        run, program, bufs, device = self._prepare(params, inputs, targets, init, lengths, tau, batch,
                                                   need_targets=False, returned=True)
        loss, dev = self._healing(run, lambda kern: kern.forward(run.tau, run.batch, 0, bufs, device))
        out = self.backend.outputs(program, bufs, dev, run)
        if program.loss and (targets or not self.rec.of_role(Role.TARGET)):
            out["loss"] = float(loss)
        return out

    def loss(self, params, inputs=None, targets=None, init=None, lengths=None, tau=None, batch=None) -> float:
        """The loss alone: the forward pass without returning its values."""
        if self.rec.loss is None:
            raise ModelError(f"model `{self.rec.name}` has no loss", expected="a line `loss = sum_t(...)`")
        run, _, bufs, device = self._prepare(params, inputs, targets, init, lengths, tau, batch)
        return float(self._healing(run, lambda kern: kern.forward(run.tau, run.batch, 0, bufs, device))[0])

    def value_and_grad(self, params, inputs=None, targets=None, init=None, lengths=None, truncate=None,
                       tau=None, batch=None):
        """The loss and the gradients of params, inputs and initial states
        (device arrays, given device arrays)."""
        if self.rec.loss is None:
            raise ModelError(f"model `{self.rec.name}` has no loss to differentiate",
                             expected="a line `loss = sum_t(...)`")
        if truncate is not None and (isinstance(truncate, bool) or not isinstance(truncate, int) or truncate < 1):
            raise InputError(f"truncate must be a positive number of steps, not {truncate!r}")
        run, program, bufs, device = self._prepare(params, inputs, targets, init, lengths, tau, batch)

        def passes(kern):
            loss, _ = kern.forward(run.tau, run.batch, 0, bufs, device)
            d = layout.adjoints(program, bufs, run, self.workspace())
            return loss, d, kern.backward(run.tau, run.batch, truncate or 0, {**bufs, **d}, device)
        loss, d, dev = self._healing(run, passes)
        return float(loss), self.backend.gradients(program, d, dev, run)

    def _healing(self, run: RunArgs, passes):
        """`passes(kernels)`; if the kernels' first use fails and numba had machine
        code cached for them (a damaged cache: numba raises when it loads one),
        that code is deleted, with a warning, and the passes run once more on
        kernels compiled afresh.  A genuine error fails again and is raised."""
        key = (run.mask is not None, run.tau if self.mode == "unrolled" else None)
        kern = self.kernels(run.mask is not None, run.tau)
        try:
            return passes(kern)
        except UnfoldError:
            raise
        except Exception as e:  # noqa: BLE001 - anything numba's cache can raise
            module = getattr(kern, "module", None)
            if key in self._healed or module is None or not self.cache.purge_machine_code(module.__name__):
                raise
            self._healed.add(key)
            warnings.warn(f"unfold: numba's cached machine code for {module.__name__} could not be loaded "
                          f"({type(e).__name__}: {e}); it was deleted and is compiled again", RuntimeWarning,
                          stacklevel=3)
            self.cache.forget_module(module.__name__)
            del self._kernels[key]
            return passes(self.kernels(run.mask is not None, run.tau))


@functools.lru_cache(maxsize=None)
def _code_version() -> str:
    """A hash of the code generators, so a changed generator never reuses old source."""
    package = Path(__file__).parent.parent
    files = [f for layer in ("lang", "graph", "compiler") for f in sorted((package / layer).rglob("*.py"))]
    spec = importlib.util.find_spec("unfold.backends")   # its files, wherever installed; nothing runs
    for folder in spec.submodule_search_locations:
        files += sorted(Path(folder).rglob("*.py"))
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]


def compile(rec: Recurrence, target: str = "cpu", dtype=np.float64, mode: str = "rolled",
            unroll: int = 1, cache_dir=None, **options) -> Compiled:
    """Compile `rec` for `target` ("cpu", "numpy" or "cuda").

    mode="rolled" runs the step program in a time loop (compile time does not
    depend on T); "unrolled" emits straight-line code for each T it is called
    with; unroll=k repeats the step k times per loop trip.  `options` are the
    target's own: schedule="auto" | "persistent" | "stepwise" for "cuda"
    (docs/cuda.md)."""
    b = backend(target)
    if mode not in MODES:
        raise UnfoldError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    if np.dtype(dtype) not in FLOATS:
        raise UnfoldError(f"dtype must be float32 or float64, not {np.dtype(dtype)}")
    if isinstance(unroll, bool) or not isinstance(unroll, int) or unroll < 1:
        raise UnfoldError(f"unroll must be a positive integer, not {unroll!r}")
    return Compiled(rec, b, dtype, mode, unroll, DiskCache(Path(cache_dir) if cache_dir else default_cache_dir()),
                    check_options(b, options))
