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

import dataclasses
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
from . import layout, noise, tied
from .backend import FLOATS, Backend, backend, check_options
from .cache import DiskCache, default_cache_dir
from .calls import Variant, final_states, seed_names, wanted
from .calls import seed as add_cotangents   # `seed` is also the name of a call's dropout seed
from .calls import cotangents as cotangents_of
from .passes import lower
from .stepper import Stepper
from .threads import BlasThreads

MODES = ("rolled", "unrolled")
VERSION = "2"   # of the generated code's conventions: a new one never reuses old cache entries


class Compiled:
    """A compiled recurrence; the kernels for runs with `lengths` are built on first use."""

    def __init__(self, rec: Recurrence, target: Backend, dtype, mode: str, unroll: int, cache: DiskCache,
                 options: dict, threads: int = 1):
        self.rec, self.backend, self.dtype = rec, target, np.dtype(dtype)
        self._lowered, self.ties = tied.untie(rec)   # W.T @ v: a derived param per transposed one
        self._lowered, self.masks = noise.lower(self._lowered)   # dropout: a product with a mask input
        self.target = target.name
        self.mode, self.unroll, self.cache, self.options = mode, unroll, cache, options
        self.threads = threads
        self.cache_hits = 0   # modules loaded from the disk cache rather than generated
        self._kernels: dict = {}
        self._programs: dict = {}
        self._healed: set = set()   # kernels whose damaged numba cache was deleted once
        self._local = threading.local()

    @property
    def cache_dir(self) -> Path:
        return self.cache.dir

    @property
    def dropout(self) -> bool:
        """Does the model drop units in training mode (calls given a `seed`)?"""
        return bool(self.masks)

    # -- building --------------------------------------------------------------
    def program(self, masked: bool = False, wrt=None, seeds=()):
        """The step program of a variant (with lengths; computing the gradients
        `wrt`; taking cotangents for `seeds`), lowered once and kept on disk
        (lowering runs sympy; a warm start should not)."""
        variant = Variant(masked, None if wrt is None else frozenset(wrt), frozenset(seeds))
        if variant not in self._programs:
            name = f"unfold_{self.stem}_{self.key(variant, 'program')}.program"
            data = self.cache.read_bytes(name)
            program = pickle.loads(data) if data is not None else None
            if program is None:
                program = lower(self._lowered, masked=masked, wrt=variant.wrt, seeds=variant.seeds)
                self.cache.write_bytes(name, pickle.dumps(program))
            self._programs[variant] = program
        return self._programs[variant]

    @property
    def stem(self) -> str:
        return re.sub(r"\W", "_", self.rec.name, flags=re.ASCII).strip("_")[:40] or "model"

    def key(self, variant: "Variant", tau) -> str:
        import numba  # noqa: PLC0415 (its version is part of what the code depends on)
        text = "\n".join([canonical(self.rec), self.target, self.dtype.name, self.mode, str(self.unroll),
                          variant.text, str(tau), repr(sorted(self.options.items())), VERSION,
                          numba.__version__, _code_version()])
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def kernels(self, program, tau: int):
        """The kernels of a program (`self.program(...)`) for runs of `tau` steps."""
        variant = Variant(program.masked, program.wrt, program.seeds)
        fixed = tau if self.mode == "unrolled" else None
        k = (variant, fixed)
        if k not in self._kernels:
            self._kernels[k] = self._build(program, variant, fixed)
        return self._kernels[k]

    def _build(self, program, variant: "Variant", tau: int | None):
        if not self.backend.generates_source:
            return self.backend.kernels(program, self.dtype, self.unroll, tau, **self.options)
        name = f"unfold_{self.stem}_{self.key(variant, tau)}"
        source = self.cache.read_text(f"{name}.py")
        if source is None:
            source, args = self.backend.emit(program, self.dtype, unroll=self.unroll, tau=tau, **self.options)
            source += f"\n#: each function's arguments, by buffer name\nARGS = {args!r}\n"
            self.cache.write_text(f"{name}.py", source)
        else:
            self.cache_hits += 1
        module = self.cache.import_module(name)
        return self.backend.load(module, module.ARGS, source)

    @property
    def source(self) -> str:
        """The generated code (for the numpy target: the step program it runs)."""
        return self.kernels(self.program(), 4).source

    def ptx(self, cc=(9, 0)) -> str:
        """PTX of every kernel (target "cuda"; needs no GPU)."""
        return self.backend.ptx(self.kernels(self.program(), 4), cc=cc)

    # -- running ---------------------------------------------------------------
    def workspace(self) -> dict:
        """Buffers reused across calls, one set per thread."""
        if not hasattr(self._local, "ws"):
            self._local.ws = {}
        return self._local.ws

    def _on_device(self, *trees) -> bool:
        """Does a call run on device arrays (any of its arrays is one, on a target that takes them)?"""
        return self.backend.device_arrays and any(is_device_array(v) for t in trees if t for v in t.values())

    def _prepare(self, params, inputs, targets, init, lengths, tau, batch, need_targets=True, returned=False,
                 wrt=None, seeds=(), seed=None):
        """The checked run, its step program, its buffers, and whether it runs on
        device arrays (then the params and initial states, packed on the host,
        are copied there; the sequences stay put)."""
        device = self._on_device(params, inputs, targets, init)
        if device:
            params, init = to_host(params), to_host(init)
        run = RunArgs.check(self.rec, params, inputs, targets, init, lengths, tau, batch, strict=True,
                            dtype=self.dtype, need_targets=need_targets, device=self.backend.device_arrays,
                            seed=seed)
        run = dataclasses.replace(run, params=tied.expand(run.params, self.ties),
                                  inputs=noise.inputs(run, self.masks, self.workspace()))
        # "all" spelled out without the masks (noise), then with a param's derived transpose (tied)
        grads = tied.wanted(noise.wanted(wanted(self.rec, wrt), self.rec, self.masks), self.ties)
        program = self.program(run.mask is not None, grads, seeds)
        fresh = layout.output_buffers(program) if returned else ()
        return run, program, layout.prepare(program, run, self.workspace(), fresh), device

    def __call__(self, params, inputs=None, targets=None, init=None, lengths=None, tau=None, batch=None,
                 return_state=False, seed=None):
        """Every state and intermediate [T, B, ...], and the loss: like `uf.evaluate`;
        with `return_state`, (that, each state's final value).  seed: training
        mode, dropout's masks drawn from it (None: evaluation, no unit dropped)."""
        run, program, bufs, device = self._prepare(params, inputs, targets, init, lengths, tau, batch,
                                                   need_targets=False, returned=True, seed=seed)
        loss, dev = self._healing(program, run, lambda kern: kern.forward(run.tau, run.batch, 0, bufs, device))
        out = self.backend.outputs(program, bufs, dev, run)
        if program.loss and (targets or not self.rec.of_role(Role.TARGET)):
            out["loss"] = float(loss)
        return (out, final_states(program, bufs, run)) if return_state else out

    def loss(self, params, inputs=None, targets=None, init=None, lengths=None, tau=None, batch=None,
             seed=None) -> float:
        """The loss alone: the forward pass without returning its values."""
        self._need_loss()
        run, program, bufs, device = self._prepare(params, inputs, targets, init, lengths, tau, batch, seed=seed)
        return float(self._healing(program, run, lambda k: k.forward(run.tau, run.batch, 0, bufs, device))[0])

    def value_and_grad(self, params, inputs=None, targets=None, init=None, lengths=None, truncate=None,
                       tau=None, batch=None, wrt=None, has_aux=False, return_state=False, seed=None):
        """The loss and its gradients (device arrays, given device arrays).

        wrt: "all" (default: params, inputs, `init:<state>`s), "params", or
        names: only those are computed.  has_aux: (loss, outputs) in place of
        the loss, outputs as `fn(...)` gives them.  return_state: also each
        state's final value (the next chunk's `init`).  seed: training mode,
        dropout's masks drawn from it (None: evaluation, no unit dropped)."""
        self._need_loss()
        _check_truncate(truncate)
        run, program, bufs, device = self._prepare(params, inputs, targets, init, lengths, tau, batch,
                                                   returned=has_aux, wrt=wrt, seed=seed)
        loss, grads, dev = self._backward(program, run, bufs, device, truncate, None)
        value = float(loss)
        if has_aux:
            value = (value, self.backend.outputs(program, bufs, dev, run))
        return (value, grads, final_states(program, bufs, run)) if return_state else (value, grads)

    def vjp(self, params, inputs=None, cotangents=None, targets=None, init=None, lengths=None, truncate=None,
            tau=None, batch=None, wrt=None, seed=None):
        """The gradients of sum over outputs of <cotangent, output>: `cotangents`
        maps output names (states, intermediates) to [T, B, n] arrays, and
        `loss` to a number; for losses computed outside the model.  seed: as
        for `value_and_grad` (the forward pass's masks come from it)."""
        _check_truncate(truncate)
        seeds = seed_names(self.rec, cotangents)
        run, program, bufs, device = self._prepare(params, inputs, targets, init, lengths, tau, batch,
                                                   need_targets="loss" in cotangents, wrt=wrt, seeds=seeds,
                                                   seed=seed)
        return self._backward(program, run, bufs, device, truncate, cotangents_of(self.rec, cotangents, run))[1]

    def forward_vjp(self, params, inputs=None, outputs=(), targets=None, init=None, lengths=None, truncate=None,
                    tau=None, batch=None, wrt=None, seed=None):
        """(values, pullback): the forward pass's values, as `fn(...)` gives them,
        and `pullback(cotangents)`, which returns what `fn.vjp` with those
        cotangents would, running only the backward pass, on the values the
        forward pass stored.  `outputs`: the names cotangents may be given for
        (outputs, `loss`).  The pullback reads the arrays given and the values
        returned: neither may change before it runs.  If another call of this
        function runs in between (on this thread, with this shape and
        variant), or the run is on device arrays, the pullback runs the
        forward pass again."""
        _check_truncate(truncate)
        outputs, names = _outputs(self.rec, outputs)
        args = dict(targets=targets, init=init, lengths=lengths, tau=tau, batch=batch, wrt=wrt, seed=seed)
        if self._on_device(params, inputs, targets, init):   # its values stay on the device, not in a plan
            return self(params, inputs, **{k: v for k, v in args.items() if k != "wrt"}), \
                lambda cotangents: self.vjp(params, inputs, _taken(cotangents, outputs), truncate=truncate, **args)
        run, program, bufs, _ = self._prepare(params, inputs, targets, init, lengths, tau, batch,
                                              need_targets="loss" in outputs, returned=True, wrt=wrt, seeds=names,
                                              seed=seed)
        loss, _ = self._healing(program, run, lambda k: k.forward(run.tau, run.batch, 0, bufs, False))
        values = self.backend.outputs(program, bufs, None, run)   # fresh arrays, as fn(...)'s
        if program.loss and (targets or not self.rec.of_role(Role.TARGET)):
            values["loss"] = float(loss)
        plan, thread = layout.plan(program, run, self.workspace()), threading.get_ident()
        stamp = plan.calls

        def pullback(cotangents):
            _taken(cotangents, outputs)
            if plan.calls != stamp or threading.get_ident() != thread:   # the stored values are gone
                return self.vjp(params, inputs, cotangents, truncate=truncate, **args)
            given = cotangents_of(self.rec, cotangents, run)
            with BlasThreads(self.threads):
                d = layout.adjoints(program, bufs, run, self.workspace(), loss_seed=given.get("loss", 0.0))
                add_cotangents(program, d, given, run)
                self.kernels(program, run.tau).backward(run.tau, run.batch, truncate or 0, {**bufs, **d}, False)
            return tied.fold(self.backend.gradients(program, d, None, run), self.ties, self.rec)
        return values, pullback

    def stepper(self, params, batch: int = 1) -> Stepper:
        """A one-step runner for generation: `step = fn.stepper(params)`, then
        `out, state = step({"x": x_t}, state)` (unfold/compiler/stepper.py)."""
        return Stepper(self, params, batch)

    def step(self, params, inputs, state=None):
        """(outputs, state) of one step.  It packs the weights on every call: for
        a loop of steps make a `stepper` once."""
        batch = next((np.shape(v)[0] for v in (inputs or {}).values()), 1)
        return self.stepper(params, batch)(inputs, state)

    def _backward(self, program, run: RunArgs, bufs: dict, device: bool, truncate, given):
        """(loss, gradients, device buffers): the forward pass, the seeds, the backward pass."""
        def passes(kern):
            loss, dev = kern.forward(run.tau, run.batch, 0, bufs, device)
            d = layout.adjoints(program, bufs, run, self.workspace(),
                                loss_seed=given is None or given.get("loss", 0.0))
            add_cotangents(program, d, given or {}, run)
            return loss, d, kern.backward(run.tau, run.batch, truncate or 0, {**bufs, **d}, device), dev
        loss, d, dev, fdev = self._healing(program, run, passes)
        return loss, tied.fold(self.backend.gradients(program, d, dev, run), self.ties, self.rec), fdev

    def _need_loss(self):
        if self.rec.loss is None:
            raise ModelError(f"model `{self.rec.name}` has no loss", expected="a line `loss = sum_t(...)`, or "
                             "fn.vjp with cotangents for its outputs")

    def _healing(self, program, run: RunArgs, passes):
        """`passes(kernels)`; if the kernels' first use fails and numba had machine
        code cached for them (a damaged cache: numba raises when it loads one),
        that code is deleted, with a warning, and the passes run once more on
        kernels compiled afresh.  A genuine error fails again and is raised."""
        kern = self.kernels(program, run.tau)
        try:
            with BlasThreads(self.threads):
                return passes(kern)
        except UnfoldError:
            raise
        except Exception as e:  # noqa: BLE001 - anything numba's cache can raise
            module = getattr(kern, "module", None)
            if module is None or module.__name__ in self._healed or \
                    not self.cache.purge_machine_code(module.__name__):
                raise
            self._healed.add(module.__name__)
            warnings.warn(f"unfold: numba's cached machine code for {module.__name__} could not be loaded "
                          f"({type(e).__name__}: {e}); it was deleted and is compiled again", RuntimeWarning,
                          stacklevel=3)
            self.cache.forget_module(module.__name__)
            self._kernels = {k: v for k, v in self._kernels.items() if v is not kern}
            with BlasThreads(self.threads):
                return passes(self.kernels(program, run.tau))


def _outputs(rec: Recurrence, outputs) -> tuple[list, list]:
    """forward_vjp's `outputs` (a name, or names) as a list, and those of them that are not `loss`."""
    outputs = [outputs] if isinstance(outputs, str) else list(outputs)
    if not outputs:
        raise InputError("forward_vjp: outputs names what the pullback takes cotangents for (outputs, loss)")
    return outputs, seed_names(rec, dict.fromkeys(outputs))


def _taken(cotangents, outputs: list):
    """`cotangents`, checked: for some of `outputs` only (what a pullback was made for)."""
    if not isinstance(cotangents, dict) or set(cotangents) - set(outputs):
        raise InputError(f"cotangents for {', '.join(map(str, cotangents)) if isinstance(cotangents, dict) else '?'}"
                         f"; this pullback takes {', '.join(outputs)} (forward_vjp's outputs): a dict of those")
    return cotangents


def _check_truncate(truncate):
    if truncate is not None and (isinstance(truncate, bool) or not isinstance(truncate, int) or truncate < 1):
        raise InputError(f"truncate must be a positive number of steps, not {truncate!r}")


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
            unroll: int = 1, cache_dir=None, threads: int = 1, **options) -> Compiled:
    """Compile `rec` for `target` ("cpu", "numpy" or "cuda").

    mode="rolled" runs the step program in a time loop (compile time does not
    depend on T); "unrolled" emits straight-line code for each T it is called
    with; unroll=k repeats the step k times per loop trip.  threads: how many
    BLAS threads a call runs with, whatever numpy's default (put back after
    the call; small per-step matmuls run fastest on one).  `options` are the
    target's own: schedule="auto" | "persistent" | "stepwise" for "cuda"
    (docs/cuda.md)."""
    b = backend(target)
    if mode not in MODES:
        raise UnfoldError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    if np.dtype(dtype) not in FLOATS:
        raise UnfoldError(f"dtype must be float32 or float64, not {np.dtype(dtype)}")
    if isinstance(unroll, bool) or not isinstance(unroll, int) or unroll < 1:
        raise UnfoldError(f"unroll must be a positive integer, not {unroll!r}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise UnfoldError(f"threads must be a positive integer, not {threads!r}")
    return Compiled(rec, b, dtype, mode, unroll, DiskCache(Path(cache_dir) if cache_dir else default_cache_dir()),
                    check_options(b, options), threads)
