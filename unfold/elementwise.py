"""Elementwise math as sympy expressions of scalars.

Every elementwise op of the DSL (`+`, `*`, `tanh`, `sigmoid`, a user's
`softsign`) is a `sympy.Lambda` of scalar arguments.  sympy gives the
derivatives (`partials`), and `numpy_eval` evaluates an expression on numpy
arrays by walking its tree (no `lambdify`, no `exec`):

    >>> fn = BUILTINS["sigmoid"]
    >>> partials(fn)            # (sigmoid(a0)*(1 - sigmoid(a0)),)

`sigmoid`, `softplus`, `relu` and `step` are sympy `Function`s of our own so
that their derivatives come out in the forms a kernel wants (sigmoid' =
s*(1-s), softplus' = sigmoid) and so that printers can emit overflow-free code.
"""
from __future__ import annotations

import functools

import numpy as np
import sympy as sp


class sigmoid(sp.Function):
    """1 / (1 + exp(-x)); derivative s * (1 - s)."""
    nargs = 1

    def fdiff(self, argindex=1):
        s = sigmoid(self.args[0])
        return s * (1 - s)


class softplus(sp.Function):
    """log(1 + exp(x)); derivative sigmoid(x)."""
    nargs = 1

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])


class step(sp.Function):
    """Heaviside step with step(0) = 0: relu's derivative."""
    nargs = 1

    def fdiff(self, argindex=1):
        return sp.Integer(0)


class relu(sp.Function):
    """max(x, 0); derivative step(x)."""
    nargs = 1

    def fdiff(self, argindex=1):
        return step(self.args[0])


def arg_symbols(n: int) -> tuple[sp.Symbol, ...]:
    """The canonical scalar arguments a0, a1, ... (real, so |x|' = sign(x))."""
    return tuple(sp.Symbol(f"a{i}", real=True) for i in range(n))


def _unary(f) -> sp.Lambda:
    (a,) = arg_symbols(1)
    return sp.Lambda((a,), f(a))


def _binary(f) -> sp.Lambda:
    a, b = arg_symbols(2)
    return sp.Lambda((a, b), f(a, b))


#: Elementwise functions callable by name in a model file.
FUNCTIONS: dict[str, sp.Lambda] = {
    "tanh": _unary(sp.tanh), "sigmoid": _unary(sigmoid), "relu": _unary(relu),
    "exp": _unary(sp.exp), "log": _unary(sp.log), "softplus": _unary(softplus),
    "abs": _unary(sp.Abs), "sqrt": _unary(sp.sqrt), "sin": _unary(sp.sin),
    "cos": _unary(sp.cos),
}

#: Python operators, also elementwise functions.
OPERATORS: dict[str, sp.Lambda] = {
    "add": _binary(lambda a, b: a + b), "sub": _binary(lambda a, b: a - b),
    "mul": _binary(lambda a, b: a * b), "div": _binary(lambda a, b: a / b),
    "pow": _binary(lambda a, b: a ** b), "neg": _unary(lambda a: -a),
}

BUILTINS = {**FUNCTIONS, **OPERATORS}


def bind_literals(fn: sp.Lambda, literals: dict[int, float]) -> sp.Lambda:
    """`fn` with the arguments at `literals`' positions replaced by numbers.

    `x ** 2` is pow(a0, a1) with a1 = 2: it becomes a one-argument Lambda.
    The remaining arguments are renamed a0, a1, ... in order."""
    keep = [v for i, v in enumerate(fn.variables) if i not in literals]
    body = fn.expr.subs({fn.variables[i]: sp.nsimplify(v) for i, v in literals.items()})
    new = arg_symbols(len(keep))
    return sp.Lambda(new, body.subs(dict(zip(keep, new)), simultaneous=True))


def compose(fn: sp.Lambda, args: list[sp.Expr]) -> sp.Expr:
    """fn(*args) as one expression: the step that fuses elementwise chains."""
    return fn.expr.subs(dict(zip(fn.variables, args)), simultaneous=True)


@functools.lru_cache(maxsize=None)
def partials(fn: sp.Lambda) -> tuple[sp.Expr, ...]:
    """d fn / d a_i for every argument, by `sympy.diff`."""
    return tuple(sp.diff(fn.expr, v) for v in fn.variables)


# -- numpy evaluation ---------------------------------------------------------

def np_sigmoid(x):
    e = np.exp(-np.abs(x))  # never overflows
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def np_softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


_NP_FUNCS = {
    sp.tanh: np.tanh, sp.exp: np.exp, sp.log: np.log, sp.Abs: np.abs,
    sp.sin: np.sin, sp.cos: np.cos, sp.sign: np.sign,
    sigmoid: np_sigmoid, softplus: np_softplus,
    relu: lambda x: np.maximum(x, 0), step: lambda x: (x > 0).astype(np.result_type(x, 0.0)),
}


def numpy_eval(expr: sp.Expr, env: dict[sp.Symbol, np.ndarray]):
    """Evaluate a sympy expression on numpy arrays; `env` binds its symbols."""
    if expr.is_Symbol:
        return env[expr]
    if expr.is_Number:
        return float(expr)
    args = [numpy_eval(a, env) for a in expr.args]
    if expr.is_Add:
        return functools.reduce(np.add, args)
    if expr.is_Mul:
        return functools.reduce(np.multiply, args)
    if expr.is_Pow:
        base, exp = args
        if exp == 0.5:
            return np.sqrt(base)
        if exp == -1:
            return 1.0 / base
        return np.power(base, exp)
    f = _NP_FUNCS.get(expr.func)
    if f is None:
        raise NotImplementedError(f"no numpy meaning for {expr.func}")
    return f(*args)
