"""Initial values for params and consts, from their `init=` declarations.

    W = param(H, H, init=orthogonal())     # a random orthogonal matrix
    R = const(H, H, init=spectral(0.9))    # echo-state reservoir, spectral radius 0.9

Defaults: a matrix gets `xavier()`, anything else `zeros()`.
"""
from __future__ import annotations

import numpy as np

from .errors import Loc, ModelError
from .ir import Init, Symbol
from .sizes import eval_size

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


def initialize(sym: Symbol, dims: dict[str, int], rng: np.random.Generator) -> np.ndarray:
    shape = sym.shape
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
        radius = np.max(np.abs(np.linalg.eigvals(w))) if len(shape) == 2 else np.max(np.abs(w))
        return w * (args[0] / radius)
    raise AssertionError(f"initializer {kind} passed the checker")


def _orthogonal(shape, gain: float, rng: np.random.Generator) -> np.ndarray:
    m, n = (shape + (1,))[:2] if len(shape) < 2 else shape
    q, r = np.linalg.qr(rng.normal(size=(max(m, n), min(m, n))))
    q *= np.sign(np.diag(r))  # a uniform draw, not one biased by QR's sign choice
    q = q if m >= n else q.T
    return (gain * q[:m, :n]).reshape(shape)
