"""The Python builder: the same IR as a `.rnn` file, written in Python.

    import unfold as uf
    from unfold.builder import Model, tanh, mse

    m = Model("elman")
    H, D, K = m.dim("H", 16), m.dim("D", 4), m.dim("K", 3)
    x, y = m.input("x", D), m.target("y", K)
    U, W = m.param("U", H, D), m.param("W", H, H, init=("orthogonal",))
    b, V, c = m.param("b", H, init=("zeros",)), m.param("V", K, H), m.param("c", K, init=("zeros",))
    h = m.state("h", H, init=0)
    t = m.t
    h[t] = tanh(W @ h[t - 1] + U @ x[t] + b)
    m["o"][t] = V @ h[t] + c
    m.loss = m.sum_t(mse(m["o"][t], y[t]))
    rec = m.build()            # checked; equal to uf.load("elman.rnn") up to the file name

`t` in arithmetic (`x[t] * t`) is the step index as a value, as in a `.rnn`
file; `max`, `min` and `clip` here are the model's functions, not Python's.

Errors point at the Python line that made the offending expression.
"""
from __future__ import annotations

import inspect
import linecache
import math
import sys

import sympy as sp

from . import elementwise as ew
from . import mathcheck as mc
from . import initializers
from .dsl import MAX_DELAY, TRANSPOSE_HELP
from .errors import Loc, ModelError
from .ir import Call, Equation, Lit, Loss, Model as Draft, Read, Reduce, Role, Symbol
from .ops import CALLABLE, EW, MATMUL, SLICE, STEP_INDEX, embedding_lookup
from .recurrence import Recurrence


def _here() -> Loc:
    """The caller's line, outside this module."""
    f = sys._getframe(1)
    while f.f_globals.get("__name__") == __name__:
        f = f.f_back
    text = linecache.getline(f.f_code.co_filename, f.f_lineno)
    indent = len(text) - len(text.lstrip())
    return Loc(f.f_code.co_filename, f.f_lineno, indent + 1, len(text.rstrip()) + 1, text)


class Time:
    """The time index `t`; `t - 1` and `t + 1` are offsets.  In arithmetic
    with model values (`x[t] * t`) it is the step index as a value."""

    def __init__(self, offset: int = 0):
        self.offset = offset

    def __sub__(self, k) -> "Time":
        return E(_node(self)) - k if _value(k) else Time(self.offset - _delay(k))

    def __add__(self, k) -> "Time":
        return E(_node(self)) + k if _value(k) else Time(self.offset + _delay(k))

    def __radd__(self, o): return o + E(_node(self))
    def __rsub__(self, o): return o - E(_node(self))
    def __mul__(self, o): return E(_node(self)) * o
    def __rmul__(self, o): return o * E(_node(self))
    def __truediv__(self, o): return E(_node(self)) / o
    def __rtruediv__(self, o): return o / E(_node(self))
    def __pow__(self, o): return E(_node(self)) ** o
    def __neg__(self): return -E(_node(self))


def _value(k) -> bool:
    """Is `t + k` arithmetic on the step index (k a model value or a float), not a time offset (an int)?"""
    return isinstance(k, (E, float))


def _delay(k) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not -MAX_DELAY <= k <= MAX_DELAY:  # `abs` is ours here
        raise ModelError(f"bad time index t{k:+}" if isinstance(k, (int, float)) else "bad time index",
                         _here(), f"t-k or t+k with a whole number k, |k| <= {MAX_DELAY}")
    return k


def _node(v):
    if isinstance(v, E):
        return v.node
    if isinstance(v, Time):  # `t` as a value, the step index; `t - 1` is the number t - 1
        step = Call(STEP_INDEX, (), _here())
        if v.offset == 0:
            return step
        return Call(EW, (step, Lit(float(v.offset), _here())), _here(), "add", ew.OPERATORS["add"])
    return Lit(_number(v, "in an equation"), _here())


def _number(v, where: str) -> float:
    """A finite Python number as a float, else a ModelError."""
    try:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v)):
            return float(v)
    except OverflowError:
        pass
    raise ModelError(f"cannot use {v!r:.40} {where}", _here(), "a model value or a finite number")


class E:
    """An expression of the model: arithmetic, `@` and calls build IR nodes."""

    def __init__(self, node):
        self.node = node

    def _ew(self, name, *args):
        return E(Call(EW, tuple(_node(a) for a in args), _here(), name, ew.OPERATORS[name]))

    def __add__(self, o): return self._ew("add", self, o)
    def __radd__(self, o): return self._ew("add", o, self)
    def __sub__(self, o): return self._ew("sub", self, o)
    def __rsub__(self, o): return self._ew("sub", o, self)
    def __mul__(self, o): return self._ew("mul", self, o)
    def __rmul__(self, o): return self._ew("mul", o, self)
    def __truediv__(self, o): return self._ew("div", self, o)
    def __rtruediv__(self, o): return self._ew("div", o, self)
    def __pow__(self, o): return self._ew("pow", self, o)
    def __neg__(self): return self._ew("neg", self)

    def __abs__(self):
        return E(Call(EW, (self.node,), _here(), "abs", ew.FUNCTIONS["abs"]))

    def __matmul__(self, o):
        return E(Call(MATMUL, (self.node, _node(o)), _here()))

    @property
    def T(self):
        """W.T: only the left side of a product, `W.T @ v`."""
        if not isinstance(self.node, Read) or self.node.offset is not None:
            raise ModelError("only a param or const matrix is transposed", _here(), TRANSPOSE_HELP)
        return _Transposed(self.node)

    def __getitem__(self, key):
        if isinstance(key, slice):
            return E(Call(SLICE, (self.node,), _here(), attrs=(key.start, key.stop)))
        if isinstance(key, E):   # E[x[t]]: an embedding lookup (lang/ops/index.py)
            return E(embedding_lookup(self.node, key.node, _here()))
        raise ModelError("only a variable is indexed by time, and a vector by a slice [lo:hi]", _here(),
                         "v[t], v[t - 1], or z[0:H]")


class _Transposed:
    """`W.T` in the builder: W's transpose as the left side of `@`, nothing else."""

    def __init__(self, node):
        self.node = node

    def __matmul__(self, o):
        return E(Call(MATMUL, (self.node, _node(o)), _here(), attrs=("T",)))

    def _refuse(self, *args):
        raise ModelError("a transposed matrix (`W.T`) is only the left side of a product", _here(),
                         TRANSPOSE_HELP)

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _refuse
    __neg__ = __rmatmul__ = __getitem__ = __pow__ = _refuse


class Var(E):
    """A declared symbol or an equation's left side: `h[t-1]` reads it, `h[t] = ...` defines it."""

    def __init__(self, model: "Model", name: str):
        super().__init__(Read(name, None, _here()))
        self.model, self.name = model, name

    def __getitem__(self, key):
        if isinstance(key, Time):
            return E(Read(self.name, key.offset, _here()))
        return super().__getitem__(key)

    def __setitem__(self, key, value):
        if not isinstance(key, Time) or key.offset != 0:
            raise ModelError(f"define `{self.name}[t] = ...` at t itself", _here(), f"{self.name}[t] = ...")
        self.model._equation(self.name, value)


def _function(name: str):
    fn = ew.FUNCTIONS[name]

    def call(*args):
        _arity(name, fn, args)
        if all(isinstance(a, sp.Basic) for a in args):  # inside a user function's body
            return ew.compose(fn, list(args))
        return E(Call(EW, tuple(_node(a) for a in args), _here(), name, fn))
    call.__name__ = name
    return call


def _arity(name: str, fn: sp.Lambda, args):
    if len(args) != len(fn.variables):
        raise ModelError(f"{name}() takes {len(fn.variables)} argument(s), got {len(args)}", _here(),
                         f"{name}({', '.join(f'a{i}' for i in range(len(fn.variables)))})")


for _name in ew.FUNCTIONS:
    globals()[_name] = _function(_name)


def _tensor(op):
    allowed = getattr(op, "keywords", ())   # dropout(v, p, variational=True)

    def call(*args, **flags):
        op.check_arity(len(args), _here())
        for k, v in flags.items():
            if k not in allowed or type(v) is not bool:
                raise ModelError(f"{op.name}() takes no keyword argument `{k}`" if k not in allowed else
                                 f"`{k}=` takes True or False, not {v!r}", _here(),
                                 f"{op.name}({op.signature}" + "".join(f", {a}=True" for a in allowed) + ")")
        return E(Call(op, tuple(_node(a) for a in args), _here(), attrs=tuple(k for k, v in flags.items() if v)))
    call.__name__ = op.name
    return call


#: every op a model calls by name (`sum` is `sum_`: Python has a `sum`)
for _op in CALLABLE.values():
    globals()[_op.name + ("_" if _op.name == "sum" else "")] = _tensor(_op)


class Model:
    """Collects declarations and equations; `build()` checks them."""

    t = Time()

    def __init__(self, name: str):
        self.name = name
        self.dims: dict = {}
        self.symbols: dict[str, Symbol] = {}
        self.equations: list[Equation] = []
        self.functions: dict[str, sp.Lambda] = {}
        self._loss: Loss | None = None
        self._vars: dict[str, Var] = {}

    def dim(self, name: str, size: int) -> str:
        self.dims[name] = (size, _here())
        return name

    def _declare(self, name, role, dims, init=None, direction=1) -> Var:
        if name in self.symbols or name in self.dims:
            raise ModelError(f"`{name}` is declared twice", _here(), "a new name")
        self.symbols[name] = Symbol(name, role, tuple(dims), _here(), init, direction)
        return self[name]

    def input(self, name, *dims): return self._declare(name, Role.INPUT, dims)
    def target(self, name, *dims): return self._declare(name, Role.TARGET, dims)

    def param(self, name, *dims, init=None, role=Role.PARAM):
        if init is not None:
            if not (isinstance(init, (tuple, list)) and init and isinstance(init[0], str)):
                raise ModelError(f"bad init {init!r:.40}", _here(), 'a tuple: ("zeros",) or ("uniform", 0.1)')
            kind, *args = init
            init = initializers.make(kind, tuple(args), _here())
        return self._declare(name, role, dims, init)

    def const(self, name, *dims, init=None):
        return self.param(name, *dims, init=init, role=Role.CONST)

    def state(self, name, *dims, init=None, direction="forward"):
        if direction not in ("forward", "backward"):
            raise ModelError(f"bad direction {direction!r}", _here(), '"forward" or "backward"')
        init = init.name if isinstance(init, Var) else None if init is None else _number(init, "as init")
        return self._declare(name, Role.STATE, dims, init, 1 if direction == "forward" else -1)

    def function(self, name: str, body):
        """A user elementwise function: `m.function("softsign", lambda z: z / (1 + abs(z)))`."""
        args = ew.arg_symbols(len(inspect.signature(body).parameters))
        try:
            expr = sp.sympify(body(*args), strict=True)  # strict: never parse (evaluate) a string
        except (sp.SympifyError, TypeError, ValueError, ArithmeticError) as e:
            raise ModelError(f"function `{name}` does not give elementwise math: {e}", _here(),
                             "a lambda of sympy-compatible arithmetic: lambda z: z / (1 + abs(z))") from None
        why = mc.problem(expr) or mc.too_big(expr)
        if why:
            raise ModelError(f"function `{name}` {why}", _here(), mc.REAL_HELP + "; " + mc.BOUNDS_HELP)
        self.functions[name] = fn = sp.Lambda(args, expr)

        def call(*xs):
            _arity(name, fn, xs)
            return E(Call(EW, tuple(_node(a) for a in xs), _here(), name, fn))
        return call

    def __getitem__(self, name: str) -> Var:
        return self._vars.setdefault(name, Var(self, name))

    def _equation(self, name, value):
        if any(e.name == name for e in self.equations):
            raise ModelError(f"`{name}[t]` is defined twice", _here(), "one equation per variable")
        self.equations.append(Equation(name, _node(value), _here()))

    def sum_t(self, term): return (Reduce.SUM, term)
    def mean_t(self, term): return (Reduce.MEAN, term)
    def last_t(self, term): return (Reduce.LAST, term)

    @property
    def loss(self):
        return self._loss

    @loss.setter
    def loss(self, value):
        if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], Reduce)):
            raise ModelError("the loss must reduce a per-step term over time", _here(),
                             "m.loss = m.sum_t(...), m.mean_t(...) or m.last_t(...)")
        reduce, term = value
        self._loss = Loss(reduce, _node(term), _here())

    def build(self) -> Recurrence:
        return Recurrence.check(Draft(self.name, dict(self.dims), dict(self.symbols), list(self.equations),
                                self._loss, dict(self.functions), f"<builder {self.name}>"))
