"""Checking the arrays of a run before anything computes with them.

    run = RunArgs.check(rec, params, inputs, targets, init=None, lengths=None)
    run.tau, run.batch, run.dtype

Every backend calls this first: a wrong name, shape or dtype is an
`InputError` naming the array, what was expected and what was given; compiled
backends also demand C-contiguous arrays of their own dtype (`strict=True`),
since numba does not bounds-check and a wrong shape would corrupt memory.
Sequences are time-major: `x` is [T, B, n]; a per-sequence input is [B, n].
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ..lang.errors import InputError
from ..lang.ir import Role
from ..lang.ops import dropout
from ..lang.recurrence import Recurrence

FLOATS = (np.float32, np.float64)


def _shape_text(shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


@dataclass
class RunArgs:
    params: dict[str, np.ndarray]
    inputs: dict[str, np.ndarray]   # inputs and targets together
    init: dict[str, np.ndarray | None]
    lengths: np.ndarray | None
    tau: int
    batch: int
    dtype: np.dtype
    mask: np.ndarray | None = field(default=None)  # [T+1, B] bool, indexed by step t
    noise: dict = field(default_factory=dict)       # dropout site -> its mask [T, B, n]; {}: evaluation

    @classmethod
    def check(cls, rec: Recurrence, params, inputs=None, targets=None, init=None, lengths=None,
              tau=None, batch=None, strict=False, dtype=None,
              need_targets=True, device=False, seed=None) -> "RunArgs":
        """`device`: inputs and targets may be CUDA device arrays (target "cuda");
        `seed`: a training run, its dropout masks drawn from it (None: evaluation)."""
        inputs, targets, init = dict(inputs or {}), dict(targets or {}), dict(init or {})
        params = _check_params(rec, params, strict, dtype)
        dt = np.dtype(dtype) if dtype is not None else (
            next(iter(params.values())).dtype if params else np.dtype(np.float64))
        seqs = {}
        read_by_equations = rec.read_in_equations
        for role, given, what in ((Role.INPUT, inputs, "input"), (Role.TARGET, targets, "target")):
            names = {s.name for s in rec.of_role(role)}
            extra = sorted(set(given) - names)
            if extra:
                raise InputError(f"unknown {what} `{extra[0]}`; the model's {what}s are: "
                                 f"{', '.join(sorted(names)) or '(none)'}")
            for s in rec.of_role(role):
                if s.name not in given:
                    if role is Role.TARGET and not (need_targets and rec.loss) and s.name not in read_by_equations:
                        continue  # only the loss reads it, and no loss is asked for
                    raise InputError(f"missing {what} `{s.name}` ({'[T, B, ' if s.timed else '[B, '}"
                                     f"{', '.join(map(str, s.shape))}])")
                a = given[s.name]
                if s.name in rec.indices and getattr(a, "dtype", None) is not None \
                        and np.dtype(a.dtype).kind in "iu" and not is_device_array(a):
                    a = np.ascontiguousarray(a, dt)  # indices may be given as integers
                seqs[s.name] = _array(s.name, a, dt, strict, device)
        tau, batch = _sizes(rec, seqs, _count("tau", tau), _count("batch", batch))
        _check_memory(rec, tau, batch, dt)
        for name, a in seqs.items():
            s = rec.symbols[name]
            want = ((tau,) if s.timed else ()) + (batch,) + s.shape
            if a.shape != want:
                raise InputError(f"{s.role.value} `{name}` has shape {_shape_text(a.shape)}; expected "
                                 f"{_shape_text(want)} ({'[T, B, ...], time-major' if s.timed else '[B, ...]'})")
        inits = _check_init(rec, init, batch, dt, strict)
        lengths, mask = _check_lengths(lengths, tau, batch)
        _check_classes(rec, seqs, mask)
        return cls(params, seqs, inits, lengths, tau, batch, dt, mask, _noise(rec, tau, batch, seed, dt))

    @property
    def last_steps(self) -> list[int]:
        """The steps that end a sequence: T, or every distinct length."""
        return [self.tau] if self.lengths is None else sorted({int(n) for n in self.lengths})

    @property
    def lengths_or_tau(self) -> np.ndarray:
        return self.lengths.astype(float) if self.lengths is not None else np.full(self.batch, float(self.tau))


def _noise(rec: Recurrence, tau: int, batch: int, seed, dtype) -> dict:
    """Each dropout's mask for a training run (`seed`: a whole number); {} for evaluation (None)."""
    seed = dropout.check_seed(seed)
    return {} if seed is None else dropout.masks(rec, tau, batch, seed, dtype)


def is_device_array(a) -> bool:
    """A numba CUDA device array (or the simulator's stand-in for one)."""
    return hasattr(a, "copy_to_host") and not isinstance(a, np.ndarray)


def host_array(a):
    """A device array copied to the host; anything else as it is."""
    return a.copy_to_host() if is_device_array(a) else a


def to_host(tree: dict | None) -> dict | None:
    """The dict with its device arrays copied to the host."""
    return None if tree is None else {k: host_array(v) for k, v in tree.items()}


def _array(name: str, a, dtype, strict: bool, device: bool = False) -> np.ndarray:
    if isinstance(a, (np.matrix, np.ma.MaskedArray)):   # their * and masks mean other things
        kind = "a numpy.matrix" if isinstance(a, np.matrix) else "a masked array (unfold does not read masks)"
        raise InputError(f"`{name}` is {kind}; pass a plain array: np.asarray({name})"
                         + (", and lengths= for variable-length sequences" if "masked" in kind else ""))
    if is_device_array(a):
        if not device:
            raise InputError(f"`{name}` is a CUDA device array; this function runs on the host: pass "
                             f"{name}.copy_to_host(), or compile with target='cuda'")
        return _device_array(name, a, dtype)
    if not isinstance(a, np.ndarray):
        if strict:
            raise InputError(f"`{name}` must be a numpy array, not {type(a).__name__}")
        a = np.asarray(a, dtype=dtype)
    if a.dtype.type not in FLOATS:
        raise InputError(f"`{name}` has dtype {a.dtype}; expected float32 or float64")
    if strict and a.dtype != dtype:
        raise InputError(f"`{name}` has dtype {a.dtype}; this function was compiled for {np.dtype(dtype)}")
    if strict and not a.flags.c_contiguous:
        raise InputError(f"`{name}` is not C-contiguous; pass np.ascontiguousarray({name})")
    return a


def _device_array(name: str, a, dtype):
    """A device array is checked by its attributes; its data stays where it is."""
    if np.dtype(a.dtype) != np.dtype(dtype):
        raise InputError(f"`{name}` has dtype {a.dtype}; this function was compiled for {np.dtype(dtype)}")
    if not a.is_c_contiguous():
        raise InputError(f"`{name}` is a device array that is not C-contiguous; make a contiguous copy")
    return a


def _check_params(rec: Recurrence, params, strict: bool, dtype) -> dict[str, np.ndarray]:
    if not isinstance(params, dict):
        raise InputError(f"params must be a dict name -> array, not {type(params).__name__}")
    names = {s.name for s in rec.params}
    extra = sorted(set(params) - names)
    if extra:
        raise InputError(f"unknown param `{extra[0]}`; the model's params are: {', '.join(sorted(names))}")
    out = {}
    dt = np.dtype(dtype) if dtype is not None else None
    for s in rec.params:
        if s.name not in params:
            raise InputError(f"missing param `{s.name}` ({_shape_text(s.shape)}); "
                             "rec.init_params(seed) makes a full set")
        a = _array(s.name, params[s.name], dt or np.float64, strict)
        dt = dt or a.dtype
        if a.shape != s.shape:
            raise InputError(f"param `{s.name}` has shape {_shape_text(a.shape)}; expected {_shape_text(s.shape)}")
        if a.dtype != dt:
            raise InputError(f"param `{s.name}` has dtype {a.dtype} but others are {dt}; use one dtype")
        out[s.name] = a
    return out


def _sizes(rec, seqs, tau, batch) -> tuple[int, int]:
    for name, a in seqs.items():
        timed = rec.symbols[name].timed
        if a.ndim < 2:
            raise InputError(f"`{name}` has shape {_shape_text(a.shape)}; expected "
                             f"{'[T, B, ...]' if timed else '[B, ...]'}")
        t, b = (a.shape[0], a.shape[1]) if timed else (None, a.shape[0])
        if timed and tau is not None and t != tau:
            raise InputError(f"`{name}` has {t} steps but the run has {tau}")
        if batch is not None and b != batch:
            raise InputError(f"`{name}` has batch {b} but the run has {batch}")
        tau = t if timed else tau
        batch = b
    if tau is None:
        raise InputError("no sequence input tells the number of steps: pass tau=")
    if tau < 1:
        raise InputError(f"the number of steps must be at least 1, not {tau}")
    batch = 1 if batch is None else batch
    if batch < 1:
        raise InputError(f"the batch must hold at least one sequence, not {batch}")
    return tau, batch


def _count(what: str, n):
    """A whole number given for `tau` or `batch` (None: from the arrays)."""
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise InputError(f"{what} must be a whole number, not {n!r} ({type(n).__name__})")
    return int(n)


def _check_memory(rec: Recurrence, tau: int, batch: int, dtype):
    """Refuse a run whose per-step values alone would not fit in this machine's memory."""
    width = sum(s.shape[0] if s.shape else 1 for s in rec.of_role(Role.STATE, Role.INTER))
    need = tau * batch * max(width, 1) * np.dtype(dtype).itemsize
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not a POSIX system: no check
        return
    if need > have:
        raise InputError(f"a run of {tau} steps and {batch} sequences needs at least {_bytes(need)} for its "
                         f"states and intermediates; this machine has {_bytes(have)}: run shorter chunks "
                         "(init= carries the state from one to the next)")


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _check_init(rec, init, batch, dtype, strict) -> dict[str, np.ndarray | None]:
    states = {s.name: s for s in rec.states}
    extra = sorted(set(init) - set(states))
    if extra:
        raise InputError(f"init for `{extra[0]}`, which is not a state; states: {', '.join(states) or '(none)'}")
    out = {}
    for name, s in states.items():
        v = init.get(name)
        if v is not None:
            v = _array(f"init[{name}]", v, dtype, strict)
            if v.shape not in ((batch,) + s.shape, s.shape):
                raise InputError(f"init[{name}] has shape {_shape_text(v.shape)}; expected "
                                 f"{_shape_text((batch,) + s.shape)}")
            v = np.ascontiguousarray(np.broadcast_to(v, (batch,) + s.shape), dtype)
        out[name] = v
    return out


def _check_lengths(lengths, tau, batch):
    if lengths is None:
        return None, None
    a = np.asarray(lengths)
    if a.shape != (batch,) or (a.dtype.kind not in "iu" and a.size):
        raise InputError(f"lengths has shape {_shape_text(a.shape)} and dtype {a.dtype}; "
                         f"expected integers of shape [{batch}]")
    if a.min() < 1 or a.max() > tau:
        raise InputError(f"lengths must lie in 1..{tau}; got {a.min()}..{a.max()}")
    steps = np.arange(tau + 1)[:, None]
    return a.astype(np.int64), (steps >= 1) & (steps <= a[None, :])


def _check_classes(rec, seqs, mask):
    """Index inputs and targets (classes of softmax_cross_entropy, tokens of an
    embedding) hold whole numbers 0..n-1 where sequences run (the padding
    after a sequence's end is never read)."""
    for name, n in rec.indices.items():
        a = seqs.get(name)
        if a is None or is_device_array(a):
            continue
        k = a[..., 0]
        if mask is not None and rec.symbols[name].timed:
            k = k[mask[1:]]
        bad = ~((k >= 0) & (k < n) & (k == np.floor(k)))
        if bad.any():
            what = "class indices of softmax_cross_entropy" if rec.symbols[name].role is Role.TARGET else \
                "token indices of an embedding lookup"
            raise InputError(f"{'target' if rec.symbols[name].role is Role.TARGET else 'input'} `{name}` holds "
                             f"the {what}: whole numbers 0..{n - 1}; it has {float(k[bad][0])!r}")
