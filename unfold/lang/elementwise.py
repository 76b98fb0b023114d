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
(no `lambdify`, no `exec`).  `sigmoid`, `softplus`, `relu`, `step`,
`where`, `maximum` and `minimum` (`max`, `min`; `clip` is made of them) are
sympy `Function`s of our own, so that their derivatives come out
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


class maximum(sp.Function):
    """max(a, b).  Subgradient: where a == b the derivative flows into a only
    (max picks a where a >= b), so d/da + d/db is always 1."""
    nargs = 2

    @classmethod
    def eval(cls, a, b):
        if a.is_Number and b.is_Number:
            return a if a >= b else b
        return a if a == b else None

    def fdiff(self, argindex=1):
        a, b = self.args
        return 1 - step(b - a) if argindex == 1 else step(b - a)

    def _eval_is_real(self):
        return fuzzy_and(a.is_real for a in self.args)


class minimum(sp.Function):
    """min(a, b).  Subgradient: where a == b the derivative flows into a only
    (min picks a where a <= b)."""
    nargs = 2

    @classmethod
    def eval(cls, a, b):
        if a.is_Number and b.is_Number:
            return a if a <= b else b
        return a if a == b else None

    def fdiff(self, argindex=1):
        a, b = self.args
        return 1 - step(a - b) if argindex == 1 else step(a - b)

    def _eval_is_real(self):
        return fuzzy_and(a.is_real for a in self.args)


def clip(v, lo, hi):
    """min(max(v, lo), hi): v's derivative is 1 on the closed interval [lo, hi]
    (ties go to v), lo's below it, hi's above it."""
    return minimum(maximum(v, lo), hi)


def clip_literals(literals: dict[int, float]) -> tuple[str, str] | None:
    """Why clip's bounds, where both are numbers, are unusable, and what is
    expected (None if they are usable)."""
    if 1 in literals and 2 in literals and literals[1] > literals[2]:
        return (f"clip's lower bound {literals[1]:g} is above its upper bound {literals[2]:g}",
                "clip(v, lo, hi) with lo <= hi")
    return None


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
    literals: Callable | None = None  # {position: number} -> (why refused, expected) or None

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
    Function("max", maximum, 2, lambda a, b: np.where(a >= b, a, b),  # as the kernels: NaN >= b is False
             lambda p, a, b: f"({a} if {a} >= {b} else {b})"),
    Function("min", minimum, 2, lambda a, b: np.where(a <= b, a, b),
             lambda p, a, b: f"({a} if {a} <= {b} else {b})"),
    Function("clip", clip, 3, lambda v, lo, hi: ENTRIES["min"].numpy(ENTRIES["max"].numpy(v, lo), hi), None,
             literals=clip_literals),
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
    The remaining arguments are renamed a0, a1, ... in order.  ValueError
    if a part made only of numbers is not a finite real number (`compose`)."""
    keep = [v for i, v in enumerate(fn.variables) if i not in literals]
    new = iter(arg_symbols(len(keep)))
    args = [sp.Float(literals[i]) if i in literals else next(new) for i in range(len(fn.variables))]
    return sp.Lambda(arg_symbols(len(keep)), compose(fn, args))


def compose(fn: sp.Lambda, args: list[sp.Expr]) -> sp.Expr:
    """fn(*args) as one expression: the step that fuses elementwise chains.
    `xreplace`, not `subs`: subs re-asks sympy's assumptions at every level
    and takes exponential time on nested functions (tanh(tanh(...))).
    Numbers among `args` go in as placeholders, and each part of the result
    made only of them and other numbers is computed in float64
    (`_fold_numbers`): exact arithmetic would build b**b**b at b = 10 digit
    by digit.  ValueError if such a part is not a finite real number."""
    numbers, mapping = {}, {}
    for v, a in zip(fn.variables, args):
        if a.is_number:
            mapping[v] = c = sp.Dummy(real=True)
            numbers[c] = a
        else:
            mapping[v] = a
    body = fn.expr.xreplace(mapping)
    return _fold_numbers(body, numbers) if numbers else body


def _fold_numbers(expr: sp.Expr, numbers: dict) -> sp.Expr:
    """`expr` with each largest part made of numbers, placeholders among them, replaced by its value."""
    values = {c: _real(a) for c, a in numbers.items()}
    constant, placed = {}, {}
    for e in distinct(expr, post=True):
        constant[e] = e in values or (not e.is_Symbol and all(constant[a] for a in e.args))
        placed[e] = e in values or any(placed[a] for a in e.args)
    replace, stack = {}, [expr]
    while stack:
        e = stack.pop()
        if constant[e] and placed[e]:
            replace[e] = exact(fold(sp.Lambda(tuple(values), e), list(values.values())))
        elif placed[e]:
            stack.extend(e.args)
    return expr.xreplace(replace)


def _real(a: sp.Expr) -> float:
    try:
        return float(a)
    except (TypeError, ValueError, OverflowError):
        raise ValueError("is not a real number") from None


def exact(v: float) -> sp.Expr:
    """A float as an exact sympy number: a simple form that gives the same float
    back (0.1 -> 1/10, 1.4142135623730951 -> sqrt(2)), else its exact binary value
    (nsimplify would make 5e-324 a 0)."""
    r = sp.nsimplify(v)
    try:
        if float(r) == v:
            return r
    except (TypeError, ValueError, OverflowError):
        pass
    return sp.Rational(v)


def fold(fn: sp.Lambda, values: list[float]) -> float:
    """fn at numbers, evaluated as the interpreters would (float64, numpy
    meanings): `10**10**10` overflows at once instead of building a giant
    integer.  ValueError if the result is not a finite real number."""
    with np.errstate(all="ignore"):
        try:
            v = numpy_eval(fn.expr, {a: np.float64(x) for a, x in zip(fn.variables, values)})
        except (TypeError, ValueError, ArithmeticError):  # zoo, nan, I among sympy's own numbers
            v = math.nan
    v = float(np.real_if_close(v)) if np.ndim(v) == 0 and not np.iscomplexobj(v) else math.nan
    if not math.isfinite(v):
        raise ValueError("is not a real number (a root or log of a negative number, 0/0, ...)" if v != v
                         else "is infinite (a division by zero, log(0), or beyond float64's range)")
    return v


def distinct(expr: sp.Expr, post: bool = False):
    """Each distinct subexpression once, without recursion; `post`: arguments first."""
    seen, stack = set(), [(expr, False)]
    while stack:
        e, ready = stack.pop()
        if ready:
            yield e
            continue
        if e in seen:
            continue
        seen.add(e)
        if not post:
            yield e
            stack.extend((a, False) for a in e.args)
        else:
            stack.append((e, True))
            stack.extend((a, False) for a in e.args if a not in seen)


@functools.lru_cache(maxsize=4096)  # bounded: a process that reads many models must not grow forever
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
        if np.ndim(exp) == 0 and exp == 0.5:  # a number; `sigmoid(a) ** sigmoid(b)` has an array
            return np.sqrt(base)
        if np.ndim(exp) == 0 and exp == -1:
            return 1.0 / base
        return np.power(base, exp)
    entry = BY_SYMPY.get(expr.func)
    if entry is None:
        raise NotImplementedError(f"no numpy meaning for {expr.func}")
    return entry.numpy(*args)
