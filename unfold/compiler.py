"""`compile`: a recurrence in, a fast callable out (forward and BPTT).

    fn = uf.compile(rec, target="cpu", dtype=np.float32)
    out = fn(params, {"x": x})                       # like uf.evaluate
    loss, grads = fn.value_and_grad(params, {"x": x}, {"y": y})
    print(fn.source)                                  # the generated code

Every argument is checked before a kernel runs (names, shapes, dtype,
C-contiguity, lengths): numba does not bounds-check.  Generated source is
cached on disk under a hash of the canonical recurrence, the options and the
versions (`cache_dir`, default `$UNFOLD_CACHE_DIR` or the user cache dir), and
numba caches its machine code beside it, so a second process starts warm.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import pickle
import re
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from . import runtime
from .errors import InputError, ModelError, UnfoldError
from .ir import Recurrence, Role
from .runargs import RunArgs, is_device_array, to_host

TARGETS = ("cpu", "cuda")
MODES = ("rolled", "unrolled")
SCHEDULES = ("auto", "persistent", "stepwise")   # of the CUDA time loops


def default_cache_dir() -> Path:
    env = os.environ.get("UNFOLD_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs
    return Path(platformdirs.user_cache_dir("unfold"))


def canonical(rec: Recurrence) -> str:
    """The recurrence as text, without its file name: what the code depends on."""
    return rec.listing().split("\n", 1)[1]


class Compiled:
    """A compiled recurrence; the kernels for runs with `lengths` are built on first use."""

    def __init__(self, rec: Recurrence, target: str, dtype, mode: str, unroll: int, cache_dir: Path,
                 schedule: str = "auto"):
        self.rec, self.target, self.dtype = rec, target, np.dtype(dtype)
        self.mode, self.unroll, self.cache_dir = mode, unroll, Path(cache_dir)
        self.schedule = schedule
        self.cache_hits = 0   # modules loaded from the disk cache rather than generated
        self._kernels: dict = {}

    # -- building --------------------------------------------------------------
    def backend(self):
        if self.target == "cpu":
            from .backends import numba_cpu
            return numba_cpu
        from .backends import numba_cuda
        return numba_cuda

    def program(self, masked: bool = False):
        """The step program, lowered once and kept on disk beside the source
        (lowering runs sympy; a warm start should not)."""
        cache = self.__dict__.setdefault("_programs", {})
        if masked not in cache:
            path = self.cache_dir / f"unfold_{self.stem}_{self.key(masked, 'program')}.program"
            try:
                cache[masked] = pickle.loads(path.read_bytes())
            except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
                from .lower import lower
                cache[masked] = lower(self.rec, masked=masked)
                _atomic_write(path, pickle.dumps(cache[masked]))
        return cache[masked]

    @property
    def stem(self) -> str:
        return re.sub(r"\W", "_", self.rec.name).strip("_") or "model"  # a parsed string is "<model>"

    def key(self, masked: bool, tau: int | None) -> str:
        import numba
        from . import __version__
        text = "\n".join([canonical(self.rec), self.target, self.dtype.name, self.mode, str(self.unroll),
                          str(masked), str(tau), self.schedule, __version__, numba.__version__, _code_version()])
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def kernels(self, masked: bool, tau: int):
        fixed = tau if self.mode == "unrolled" else None
        k = (masked, fixed)
        if k not in self._kernels:
            self._kernels[k] = self._load(masked, fixed)
        return self._kernels[k]

    def _load(self, masked: bool, tau: int | None):
        name = f"unfold_{self.stem}_{self.key(masked, tau)}"
        path = self.cache_dir / f"{name}.py"
        args_path = path.with_suffix(".args")
        if path.exists() and args_path.exists():
            self.cache_hits += 1
            args = eval_args(args_path.read_text())
        else:
            program = self.program(masked)
            options = {"schedule": self.schedule} if self.target == "cuda" else {}
            source, args = self.backend().emit(program, self.dtype, unroll=self.unroll, tau=tau, **options)
            _atomic_write(path, source)
            _atomic_write(args_path, repr(args))
        module = _import(name, path)
        return self.backend().Kernels(module, args, path.read_text())

    @property
    def source(self) -> str:
        return self.kernels(False, None if self.mode == "rolled" else 4).source

    def ptx(self, cc=(9, 0)) -> str:
        """PTX of every kernel (target "cuda"; needs no GPU)."""
        if self.target != "cuda":
            raise UnfoldError(f"PTX is for target='cuda', not {self.target!r}")
        return self.backend().ptx(self.kernels(False, None if self.mode == "rolled" else 4), cc=cc)

    # -- running ---------------------------------------------------------------
    def workspace(self) -> dict:
        """Buffers reused across calls, one set per thread."""
        local = self.__dict__.setdefault("_local", threading.local())
        if not hasattr(local, "ws"):
            local.ws = {}
        return local.ws

    def _prepare(self, params, inputs, targets, init, lengths, tau, batch, need_targets=True,
                 returned=False):
        """The checked run, its step program, its buffers, and whether it runs
        on device arrays (target "cuda": then the params and initial states,
        packed on the host, are copied there; the sequences stay put)."""
        device = self.target == "cuda" and any(
            is_device_array(v) for tree in (params, inputs, targets, init) if tree for v in tree.values())
        if device:
            params, init = to_host(params), to_host(init)
        run = RunArgs.check(self.rec, params, inputs, targets, init, lengths, tau, batch,
                            strict=True, dtype=self.dtype, need_targets=need_targets, device=self.target == "cuda")
        program = self.program_for(run)
        fresh = runtime.output_buffers(program) if returned else ()
        return run, program, runtime.prepare(program, run, self.workspace(), fresh), device

    def program_for(self, run: RunArgs):
        return self.program(run.mask is not None)

    def __call__(self, params, inputs=None, targets=None, init=None, lengths=None, tau=None, batch=None):
        """Every state and intermediate [T, B, ...], and the loss: like `uf.evaluate`.
        Given device arrays (target "cuda"), the values are device arrays."""
        run, program, bufs, device = self._prepare(params, inputs, targets, init, lengths, tau, batch,
                                                   need_targets=False, returned=True)
        loss, dev = self._forward(run, bufs, device)
        out = self.backend().device_outputs(program, dev, bufs, run.tau) if device else \
            runtime.outputs(program, bufs, run.tau)
        if program.loss and (targets or not self.rec.of_role(Role.TARGET)):
            out["loss"] = float(loss)
        return out

    def loss(self, params, inputs=None, targets=None, init=None, lengths=None, tau=None, batch=None) -> float:
        """The loss alone: the forward pass without returning its values."""
        if self.rec.loss is None:
            raise ModelError(f"model `{self.rec.name}` has no loss")
        run, program, bufs, device = self._prepare(params, inputs, targets, init, lengths, tau, batch)
        return float(self._forward(run, bufs, device)[0])

    def value_and_grad(self, params, inputs=None, targets=None, init=None, lengths=None, truncate=None,
                       tau=None, batch=None):
        """The loss and the gradients of params, inputs and initial states
        (device arrays, given device arrays)."""
        if self.rec.loss is None:
            raise ModelError(f"model `{self.rec.name}` has no loss to differentiate")
        if truncate is not None and (not isinstance(truncate, int) or truncate < 1):
            raise InputError(f"truncate must be a positive number of steps, not {truncate!r}")
        run, program, bufs, device = self._prepare(params, inputs, targets, init, lengths, tau, batch)
        kern = self.kernels(run.mask is not None, run.tau)
        loss, _ = self._forward(run, bufs, device)
        d = runtime.adjoint_buffers(program, bufs, run, kern.args["backward"], self.workspace())
        if device:
            _, dev = kern.backward(run.tau, run.batch, truncate or 0, {**bufs, **d}, stay=True)
            return float(loss), self.backend().device_gradients(program, d, dev, run)
        kern.backward(run.tau, run.batch, truncate or 0, {**bufs, **d})
        return float(loss), runtime.gradients(program, d, run)

    def _forward(self, run: RunArgs, bufs: dict, device: bool):
        """The forward pass: its loss, and its device buffers when the run is on device arrays."""
        kern = self.kernels(run.mask is not None, run.tau)
        if device:
            return kern.forward(run.tau, run.batch, 0, bufs, stay=True)
        return kern.forward(run.tau, run.batch, 0, bufs), None


@functools.lru_cache(maxsize=None)
def _code_version() -> str:
    """A hash of the code generators, so a changed generator never reuses old source."""
    from . import backends
    here = Path(__file__).parent
    files = [here / n for n in ("lower.py", "codegen.py", "runtime.py", "elementwise.py")]
    files += sorted(Path(backends.__file__).parent.glob("*.py"))
    return hashlib.sha256(b"".join(f.read_bytes() for f in files if f.exists())).hexdigest()[:16]


def eval_args(text: str) -> dict:
    import ast
    return ast.literal_eval(text)


def _atomic_write(path: Path, data: str | bytes):
    """Write-then-rename: a concurrent reader sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    os.replace(tmp, path)


def _import(name: str, path: Path):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module


def compile(rec: Recurrence, target: str = "cpu", dtype=np.float64, mode: str = "rolled",
            unroll: int = 1, cache_dir=None, schedule: str = "auto") -> Compiled:
    """Compile `rec` for `target` ("cpu" or "cuda").

    mode="rolled" runs the step program in a time loop (compile time does not
    depend on T); "unrolled" emits straight-line code for each T it is called
    with; unroll=k repeats the step k times per loop trip.  schedule (CUDA):
    "persistent" keeps the time loop inside one kernel per pass, "stepwise"
    launches each stage per step over the whole GPU, "auto" picks by the size
    of the recurrent weights (docs/cuda.md)."""
    if target not in TARGETS:
        raise UnfoldError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    if mode not in MODES:
        raise UnfoldError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise UnfoldError(f"dtype must be float32 or float64, not {np.dtype(dtype)}")
    if not isinstance(unroll, int) or unroll < 1:
        raise UnfoldError(f"unroll must be a positive integer, not {unroll!r}")
    if schedule not in SCHEDULES:
        raise UnfoldError(f"unknown schedule {schedule!r}; expected one of {', '.join(SCHEDULES)}")
    if schedule != "auto" and target != "cuda":
        raise UnfoldError(f"schedule={schedule!r} is for target='cuda'; the CPU has one schedule")
    return Compiled(rec, target, dtype, mode, unroll, Path(cache_dir) if cache_dir else default_cache_dir(),
                    schedule)
