"""Initial values for params and consts, from their `init=` declarations.

    W = param(H, H, init=orthogonal())     # a random orthogonal matrix
    R = const(H, H, init=spectral(0.9))    # echo-state reservoir, spectral radius 0.9

Defaults: a matrix gets `xavier()`, anything else `zeros()`.  The checker
calls `check` on every declaration (arguments in range, a square matrix for
`spectral`); `initialize` refuses, before allocating, an array larger than
this machine's memory.
"""
from __future__ import annotations

import math
import os

import numpy as np

from .errors import Loc, ModelError
from .ir import Init, Symbol
from .sizes import SizeError, eval_size

#: initializer -> the numbers of arguments it takes
ARITY = {"zeros": (0,), "ones": (0,), "constant": (1,), "normal": (1,), "uniform": (1,),
         "orthogonal": (0, 1), "xavier": (0,), "spectral": (1,)}
_SIGNATURE = {"zeros": "zeros()", "ones": "ones()", "constant": "constant(v)", "normal": "normal(std)",
              "uniform": "uniform(a)", "orthogonal": "orthogonal() or orthogonal(gain)",
              "xavier": "xavier()", "spectral": "spectral(radius)"}


def make(kind: str, args: tuple, loc: Loc | None) -> Init:
    """A checked initializer call: a known name with a number of arguments it takes."""
    if kind not in ARITY:
        raise ModelError(f"unknown initializer {kind!r}", loc, ", ".join(_SIGNATURE.values()))
    if len(args) not in ARITY[kind]:
        raise ModelError(f"{kind}() takes {' or '.join(map(str, ARITY[kind]))} argument(s), got {len(args)}",
                         loc, _SIGNATURE[kind])
    return Init(kind, tuple(args), loc)


#: initializer -> (the least value its argument may have, what that argument is)
_LOWEST = {"normal": (0.0, "std"), "uniform": (0.0, "a"), "spectral": (0.0, "radius")}


def check(sym: Symbol, dims: dict[str, int]):
    """`sym`'s initializer fits its shape and its arguments are in range; else a ModelError at the call."""
    init = sym.init
    if not isinstance(init, Init):
        return
    expected = _SIGNATURE[init.kind]
    try:
        args = [float(eval_size(a, dims, number=True)) for a in init.args]
    except KeyError as k:
        raise ModelError(f"undeclared dim `{k.args[0]}` in {init.kind}()", init.loc, "a dim declared above") from None
    except SizeError as err:
        raise ModelError(f"{init.kind}(): {err}", init.loc, f"{expected} with a finite real number") from None
    if init.kind in _LOWEST and args[0] < _LOWEST[init.kind][0]:
        name = _LOWEST[init.kind][1]
        raise ModelError(f"{init.kind}({name}) needs {name} >= 0, got {args[0]:g}", init.loc,
                         f"{expected} with {name} >= 0")
    if init.kind == "spectral" and (len(sym.shape) != 2 or sym.shape[0] != sym.shape[1]):
        raise ModelError(f"spectral(radius) scales a square matrix, but `{sym.name}` is "
                         f"[{', '.join(map(str, sym.shape))}]", init.loc,
                         "spectral(...) on a param or const of shape (n, n); orthogonal() or xavier() otherwise")


def memory_limit() -> int | None:
    """Bytes this process may allocate: the machine's memory or the address-space limit, the smaller."""
    limits = []
    try:
        limits.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        pass
    try:
        import resource
        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft not in (resource.RLIM_INFINITY, -1) and soft > 0:
            limits.append(soft)
    except (ImportError, OSError, ValueError):
        pass
    return min(limits) if limits else None


def _check_memory(sym: Symbol):
    nbytes = 8 * math.prod(sym.shape)  # float64, what `initialize` allocates
    limit = memory_limit()
    if limit is not None and nbytes > limit:
        raise ModelError(f"`{sym.name}` [{', '.join(map(str, sym.shape))}] needs {nbytes:,} bytes "
                         f"({nbytes / 2 ** 30:.3g} GiB) in float64, more than this process may allocate "
                         f"({limit / 2 ** 30:.3g} GiB)", sym.loc, "smaller dims: rec.bind(H=...) or --dims H=...")


def initialize(sym: Symbol, dims: dict[str, int], rng: np.random.Generator) -> np.ndarray:
    shape = sym.shape
    _check_memory(sym)
    init = sym.init if isinstance(sym.init, Init) else Init("xavier" if len(shape) == 2 else "zeros")
    args = [float(eval_size(a, dims, number=True)) for a in init.args]
    kind = init.kind
    if kind == "zeros":
        return np.zeros(shape)
    if kind == "ones":
        return np.ones(shape)
    if kind == "constant":
        return np.full(shape, args[0])
    if kind == "normal":
        return rng.normal(0.0, args[0], shape)
    if kind == "uniform":
        return rng.uniform(-args[0], args[0], shape)
    if kind == "xavier":
        fan = shape[0] + shape[-1] if shape else 2
        a = np.sqrt(6.0 / fan)
        return rng.uniform(-a, a, shape)
    if kind == "orthogonal":
        return _orthogonal(shape, args[0] if args else 1.0, rng)
    if kind == "spectral":
        w = rng.normal(size=shape)
        radius = np.max(np.abs(np.linalg.eigvals(w)))  # square: `check` saw to it
        return w * (args[0] / radius)
    raise AssertionError(f"initializer {kind} passed the checker")


def _orthogonal(shape, gain: float, rng: np.random.Generator) -> np.ndarray:
    m, n = (shape + (1,))[:2] if len(shape) < 2 else shape
    q, r = np.linalg.qr(rng.normal(size=(max(m, n), min(m, n))))
    q *= np.sign(np.diag(r))  # a uniform draw, not one biased by QR's sign choice
    q = q if m >= n else q.T
    return (gain * q[:m, :n]).reshape(shape)
