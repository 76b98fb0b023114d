"""The recurrence IR: dims, symbols, expressions, equations, loss.

A `Recurrence` is what the parser (`dsl.parse`) and the Python builder
(`builder.Model`) produce and what every later stage reads.  It is checked on
construction (`check.check`): shapes are known, equations are in step order,
and an unchecked one never escapes.

    h[t] = tanh(W @ h[t-1] + U @ x[t] + b)

is `Equation("h", Call("ew", (Call("ew", (Call("matmul", (Read("W"),
Read("h", -1))), ...)), fn=tanh)))`: reads carry a time offset (`None` for
params), elementwise calls carry a sympy `Lambda`.

Per-step values are batched: at run time a per-step vector of shape (n,) is an
array [B, n] and a per-step scalar an array [B, 1]; params keep their shape.
"""
from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from typing import Union

import numpy as np
import sympy as sp

from .errors import Loc, ModelError


class Role(enum.Enum):
    INPUT = "input"
    TARGET = "target"
    PARAM = "param"
    CONST = "const"
    STATE = "state"
    INTER = "intermediate"


class Reduce(enum.Enum):
    """How the per-step loss terms become the loss."""
    SUM = "sum_t"
    MEAN = "mean_t"
    LAST = "last_t"


# A size or a number written with dims: 64, "H", ("*", 4, "H"), ("sqrt", "H").
SizeExpr = Union[int, float, str, tuple]

_ARITH = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
          "/": lambda a, b: a / b, "//": lambda a, b: a // b, "**": lambda a, b: a ** b,
          "neg": lambda a: -a, "sqrt": math.sqrt}


def eval_size(e: SizeExpr, dims: dict[str, int]):
    """Evaluate a size expression; an unknown dim raises KeyError(name)."""
    if isinstance(e, (int, float)):
        return e
    if isinstance(e, str):
        return dims[e]
    op, *args = e
    return _ARITH[op](*(eval_size(a, dims) for a in args))


def size_text(e: SizeExpr) -> str:
    if isinstance(e, (int, float, str)):
        return str(e)
    op, *args = e
    if op in ("neg", "sqrt"):
        return f"-{size_text(args[0])}" if op == "neg" else f"sqrt({size_text(args[0])})"
    return f"{size_text(args[0])}{op}{size_text(args[1])}"


# -- expressions --------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Read:
    """A symbol read: `W` (offset None), `x[t]` (0), `h[t-1]` (-1), `g[t+1]` (+1)."""
    name: str
    offset: int | None
    loc: Loc | None = None
    shape: tuple[int, ...] | None = None
    batched: bool = True


@dataclass(frozen=True, eq=False)
class Lit:
    """A number in an expression; folded into the elementwise function."""
    value: float
    loc: Loc | None = None
    shape: tuple[int, ...] = ()
    batched: bool = False


@dataclass(frozen=True, eq=False)
class Call:
    """An op applied to arguments.

    op is a registry name (`matmul`, `ew`, `concat`, `slice`, `sum`, `mean`,
    `mse`, `softmax_cross_entropy`).  For `ew`, `name` is the function
    (`tanh`, `add`, a user's `softsign`) and `fn` its sympy Lambda over the
    non-literal arguments; for `slice`, `attrs` = (lo, hi)."""
    op: str
    args: tuple
    loc: Loc | None = None
    name: str = ""
    fn: sp.Lambda | None = None
    attrs: tuple = ()
    shape: tuple[int, ...] | None = None
    batched: bool = True


Expr = Union[Read, Lit, Call]


def walk(e: Expr):
    """Post-order over an expression tree (depth is the expression's, not τ's)."""
    if isinstance(e, Call):
        for a in e.args:
            yield from walk(a)
    yield e


def reads(e: Expr) -> list[Read]:
    return [n for n in walk(e) if isinstance(n, Read)]


_INFIX = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**"}


def expr_text(e: Expr, t: int | None = None, prec: int = 0) -> str:
    """Source-like text; with an integer `t` the time indices are concrete."""
    if isinstance(e, Lit):
        v = e.value
        return str(int(v)) if float(v).is_integer() else repr(v)
    if isinstance(e, Read):
        if e.offset is None:
            return e.name
        if t is None:
            return f"{e.name}[t{e.offset:+d}]" if e.offset else f"{e.name}[t]"
        return f"{e.name}[{t + e.offset}]"
    if e.op == "matmul":
        s = f"{expr_text(e.args[0], t, 3)} @ {expr_text(e.args[1], t, 3)}"
        return f"({s})" if prec > 2 else s
    if e.op == "ew" and e.name in _INFIX:
        p = {"add": 1, "sub": 1, "mul": 2, "div": 2, "pow": 4}[e.name]
        s = f"{expr_text(e.args[0], t, p)} {_INFIX[e.name]} {expr_text(e.args[1], t, p + 1)}"
        return f"({s})" if prec > p else s
    if e.op == "ew" and e.name == "neg":
        return f"-{expr_text(e.args[0], t, 5)}"
    if e.op == "slice":
        return f"{expr_text(e.args[0], t, 9)}[{e.attrs[0]}:{e.attrs[1]}]"
    name = e.name if e.op == "ew" else e.op
    return f"{name}({', '.join(expr_text(a, t) for a in e.args)})"


# -- declarations -------------------------------------------------------------

@dataclass
class Init:
    """An initializer call: zeros(), normal(std), uniform(a), orthogonal(gain),
    xavier(), spectral(radius), constant(v)."""
    kind: str
    args: tuple[SizeExpr, ...] = ()
    loc: Loc | None = None


INITIALIZERS = {"zeros": 0, "ones": 0, "constant": 1, "normal": 1, "uniform": 1,
                "orthogonal": (0, 1), "xavier": 0, "spectral": 1}


@dataclass
class Symbol:
    name: str
    role: Role
    dims: tuple[SizeExpr, ...] = ()
    loc: Loc | None = None
    init: Init | float | str | None = None  # param/const: Init; state: number or param name
    direction: int = 1                        # states: +1 forward in time, -1 backward
    shape: tuple[int, ...] | None = None      # resolved by the checker
    timed: bool = True                        # inputs/targets: read as x[t] (else one per sequence)

    @property
    def batched(self) -> bool:
        return self.role not in (Role.PARAM, Role.CONST)


@dataclass
class Equation:
    name: str
    expr: Expr
    loc: Loc | None = None


@dataclass
class Loss:
    reduce: Reduce
    expr: Expr
    loc: Loc | None = None


@dataclass
class Recurrence:
    """A checked recurrence: the one IR every stage reads."""
    name: str
    dim_decls: dict[str, tuple[SizeExpr, Loc | None]]
    symbols: dict[str, Symbol]
    equations: list[Equation]
    loss: Loss | None = None
    functions: dict[str, sp.Lambda] = field(default_factory=dict)
    file: str = "<model>"
    dims: dict[str, int] = field(default_factory=dict)
    #: what the checker was given: `bind` checks it again with new dims (a
    #: checked recurrence cannot be re-checked: its literals are folded)
    unchecked: "Recurrence | None" = field(default=None, repr=False, compare=False)

    # -- views ---------------------------------------------------------------
    def of_role(self, *roles: Role) -> list[Symbol]:
        return [s for s in self.symbols.values() if s.role in roles]

    @property
    def params(self) -> list[Symbol]:
        return self.of_role(Role.PARAM, Role.CONST)

    @property
    def states(self) -> list[Symbol]:
        return self.of_role(Role.STATE)

    def equation(self, name: str) -> Equation:
        return next(e for e in self.equations if e.name == name)

    def delays(self, name: str) -> list[int]:
        """How many steps back (ahead, for a backward state) `name` is read, sorted."""
        exprs = [e.expr for e in self.equations] + ([self.loss.expr] if self.loss else [])
        return sorted({abs(r.offset) for x in exprs for r in reads(x) if r.name == name and r.offset})

    def max_delay(self, name: str) -> int:
        return max(self.delays(name), default=0)

    # -- binding -------------------------------------------------------------
    def bind(self, **dims: int) -> "Recurrence":
        """A copy with some dims changed, checked again: `rec.bind(H=128)`."""
        from .check import check
        unknown = sorted(set(dims) - set(self.dim_decls))
        if unknown:
            raise ModelError(f"unknown dim {unknown[0]}",
                             expected=f"one of {', '.join(self.dim_decls) or '(no dims)'}")
        decls = {k: ((int(dims[k]), loc) if k in dims else (v, loc))
                 for k, (v, loc) in self.dim_decls.items()}
        return check(dataclasses.replace(self.unchecked or self, dim_decls=decls, dims={}))

    def init_params(self, seed: int = 0, dtype=np.float64) -> dict[str, np.ndarray]:
        """Fresh values for every param and const, reproducible from `seed`."""
        from .initializers import initialize
        rng = np.random.default_rng(seed)
        return {s.name: initialize(s, self.dims, rng).astype(dtype) for s in self.params}

    # -- text ----------------------------------------------------------------
    def listing(self) -> str:
        """The checked recurrence as text (what `unfold show` prints)."""
        out = [f"recurrence {self.name}  ({self.file})", "dims"]
        out += [f"  {k} = {v}" for k, v in self.dims.items()]
        out.append("symbols")
        for s in self.symbols.values():
            concrete = "[" + ", ".join(map(str, s.shape or ())) + "]" if s.shape else "scalar"
            shape = "[" + ", ".join(size_text(d) for d in s.dims) + "] = " if s.dims else ""
            extra = ""
            if s.role is Role.STATE:
                extra = (f"  init={s.init}  direction={'forward' if s.direction > 0 else 'backward'}"
                         f"  delays={','.join(str(k) for k in self.delays(s.name))}")
            elif s.role in (Role.INPUT, Role.TARGET) and not s.timed:
                extra = "  (one per sequence)"
            elif isinstance(s.init, Init):
                extra = f"  init={s.init.kind}({', '.join(size_text(a) for a in s.init.args)})"
            out.append(f"  {s.role.value:<12} {s.name:<8} {shape}{concrete}{extra}")
        out.append("equations (one step, in order)")
        out += [f"  {e.name}[t] = {expr_text(e.expr)}" for e in self.equations]
        if self.loss:
            out.append(f"loss = {self.loss.reduce.value}({expr_text(self.loss.expr)})")
        if self.functions:
            out.append("functions")
            out += [f"  {k}({', '.join(map(str, f.variables))}) = {f.expr}" for k, f in self.functions.items()]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.listing()

    def _repr_mimebundle_(self, include=None, exclude=None):
        from .viz import draw
        return draw(self, view="circuit")._repr_mimebundle_(include, exclude)
