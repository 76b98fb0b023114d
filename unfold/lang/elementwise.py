"""Elementwise math: one registry entry per function, sympy at its core.

Every elementwise op of a model (`+`, `*`, `tanh`, `sigmoid`, a user's
`softsign`) is a `sympy.Lambda` of scalar arguments.  sympy gives the
derivatives (`partials`, by `sympy.diff`), and each *function* a model may
call is one `Function` entry here, saying in one place

    name, arity    how a model calls it:        erf(z), where(c, a, b)
    sympy          what it means:               sp.erf   (so its derivative is sympy's)
    numpy          how the interpreters run it: np.tanh
    numba          how generated code prints it: lambda p, x: f"math.erf({x})"

`numpy_eval` evaluates an expression on numpy arrays by walking its tree
(no `lambdify`, no `exec`).  `sigmoid`, `softplus`, `relu`, `step` and
`where` are sympy `Function`s of our own, so that their derivatives come out
in the forms a kernel wants (sigmoid' = s*(1-s), softplus' = sigmoid) and
printers can emit overflow-free code.

    >>> partials(FUNCTIONS["sigmoid"])          # (sigmoid(a0)*(1 - sigmoid(a0)),)
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import sympy as sp
from sympy.core.logic import fuzzy_and


class sigmoid(sp.Function):
    """1 / (1 + exp(-x)); derivative s * (1 - s)."""
    nargs = 1

    def fdiff(self, argindex=1):
        s = sigmoid(self.args[0])
        return s * (1 - s)

    def _eval_is_real(self):
        return self.args[0].is_real


class softplus(sp.Function):
    """log(1 + exp(x)); derivative sigmoid(x)."""
    nargs = 1

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    def _eval_is_real(self):
        return self.args[0].is_real


class step(sp.Function):
    """Heaviside step with step(0) = 0: relu's derivative."""
    nargs = 1

    def fdiff(self, argindex=1):
        return sp.Integer(0)

    def _eval_is_real(self):
        return True


class relu(sp.Function):
    """max(x, 0); derivative step(x)."""
    nargs = 1

    def fdiff(self, argindex=1):
        return step(self.args[0])

    def _eval_is_real(self):
        return self.args[0].is_real


class where(sp.Function):
    """where(c, a, b): a where c > 0, else b.  A selection, not arithmetic:
    the branch not taken is never read into the result (a NaN there stays out),
    and the derivative flows into the branch taken only."""
    nargs = 3

    @classmethod
    def eval(cls, c, a, b):
        if c.is_Number and c.is_finite:
            return a if c > 0 else b
        if a == b:
            return a
        return None

    def fdiff(self, argindex=1):
        c = self.args[0]
        if argindex == 1:
            return sp.Integer(0)
        return where(c, 1, 0) if argindex == 2 else where(c, 0, 1)

    def _eval_is_real(self):
        return fuzzy_and(a.is_real for a in self.args[1:])


# -- numpy meanings -------------------------------------------------------------

def np_sigmoid(x):
    e = np.exp(-np.abs(x))  # never overflows
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def np_softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def np_erf(x):
    """erf on arrays with the C library's erf (numpy has none; SciPy is not needed)."""
    a = np.asarray(x)
    out = np.frompyfunc(math.erf, 1, 1)(a)
    return np.asarray(out, dtype=a.dtype if a.dtype.kind == "f" else np.float64)


def np_step(x):
    return (x > 0).astype(np.result_type(x, 0.0))


# -- the registry ---------------------------------------------------------------------

@dataclass(frozen=True)
class Function:
    """One elementwise function: see the module docstring."""
    name: str
    sympy: object
    arity: int
    numpy: Callable
    numba: Callable | None    # (printer, *printed args) -> source; None: sympy arithmetic
    public: bool = True       # callable in a model (step and sign only appear in derivatives)

    @property
    def lam(self) -> sp.Lambda:
        args = arg_symbols(self.arity)
        return sp.Lambda(args, self.sympy(*args))


def _fast_sigmoid(p, x):
    if p.fast_tanh:  # through tanh: no exp, so the loop vectorizes
        return f"({p.num(0.5)} * {p.tanh}({p.num(0.5)} * ({x})) + {p.num(0.5)})"
    return f"({p.num(1)}/({p.num(1)} + math.exp(-({x}))))"  # exp(-x) = inf gives 0, never NaN


ENTRIES: dict[str, Function] = {f.name: f for f in [
    Function("tanh", sp.tanh, 1, np.tanh, lambda p, x: f"{p.tanh}({x})"),
    Function("sigmoid", sigmoid, 1, np_sigmoid, _fast_sigmoid),
    Function("relu", relu, 1, lambda x: np.maximum(x, 0), lambda p, x: f"max({x}, {p.num(0)})"),
    Function("exp", sp.exp, 1, np.exp, lambda p, x: f"math.exp({x})"),
    Function("log", sp.log, 1, np.log, lambda p, x: f"math.log({x})"),
    Function("softplus", softplus, 1, np_softplus,
             lambda p, x: f"(max({x}, {p.num(0)}) + math.log1p(math.exp(-abs({x}))))"),
    Function("abs", sp.Abs, 1, np.abs, lambda p, x: f"abs({x})"),
    Function("sqrt", sp.sqrt, 1, np.sqrt, None),
    Function("sin", sp.sin, 1, np.sin, lambda p, x: f"math.sin({x})"),
    Function("cos", sp.cos, 1, np.cos, lambda p, x: f"math.cos({x})"),
    Function("erf", sp.erf, 1, np_erf, lambda p, x: f"math.erf({x})"),
    Function("where", where, 3, lambda c, a, b: np.where(c > 0, a, b),
             lambda p, c, a, b: f"({a} if {c} > {p.num(0)} else {b})"),
    Function("step", step, 1, np_step, lambda p, x: f"({p.num(1)} if {x} > {p.num(0)} else {p.num(0)})",
             public=False),
    Function("sign", sp.sign, 1, np.sign, lambda p, x: f"(({p.num(1)} if {x} > {p.num(0)} else {p.num(0)}) - "
                                                        f"({p.num(1)} if {x} < {p.num(0)} else {p.num(0)}))",
             public=False),
]}

#: the entry of each sympy function class an expression may contain
BY_SYMPY: dict[object, Function] = {f.sympy: f for f in ENTRIES.values() if f.numba is not None}


def arg_symbols(n: int) -> tuple[sp.Symbol, ...]:
    """The canonical scalar arguments a0, a1, ... (real, so |x|' = sign(x))."""
    return tuple(sp.Symbol(f"a{i}", real=True) for i in range(n))


def _binary(f) -> sp.Lambda:
    a, b = arg_symbols(2)
    return sp.Lambda((a, b), f(a, b))


#: Elementwise functions callable by name in a model file.
FUNCTIONS: dict[str, sp.Lambda] = {f.name: f.lam for f in ENTRIES.values() if f.public}

#: Python operators, also elementwise functions.
OPERATORS: dict[str, sp.Lambda] = {
    "add": _binary(lambda a, b: a + b), "sub": _binary(lambda a, b: a - b),
    "mul": _binary(lambda a, b: a * b), "div": _binary(lambda a, b: a / b),
    "pow": _binary(lambda a, b: a ** b), "neg": sp.Lambda(arg_symbols(1), -arg_symbols(1)[0]),
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


def numpy_eval(expr: sp.Expr, env: dict[sp.Symbol, np.ndarray]):
    """Evaluate a sympy expression on numpy arrays; `env` binds its symbols."""
    if expr.is_Symbol:
        return env[expr]
    if expr.is_number:
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
    entry = BY_SYMPY.get(expr.func)
    if entry is None:
        raise NotImplementedError(f"no numpy meaning for {expr.func}")
    return entry.numpy(*args)
