"""The model IR: symbols, expressions, equations, the loss -- as written.

The parser (`dsl.parse`) and the Python builder (`builder.Model`) both make a
`Model`; the checker turns it into a `Recurrence` (`recurrence.py`) whose
shapes are known and whose equations are in step order.

    h[t] = tanh(W @ h[t-1] + U @ x[t] + b)

is `Equation("h", Call(EW, (Call(EW, (Call(MATMUL, (Read("W", None),
Read("h", -1))), ...)), name="tanh", fn=Lambda(a0, tanh(a0)))))`: reads carry
a time offset (`None` for params), calls carry their op's registry entry
(`unfold.lang.ops`), elementwise calls a sympy `Lambda`.

Per-step values are batched: at run time a per-step vector of shape (n,) is an
array [B, n] and a per-step scalar an array [B, 1]; params keep their shape.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any, Union

import sympy as sp

from .errors import Loc
from .sizes import SizeExpr


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

    `op` is the op's registry entry (`unfold.lang.ops`).  For the elementwise
    op, `name` is the function (`tanh`, `add`, a user's `softsign`) and `fn`
    its sympy Lambda over the non-literal arguments; for `slice`, `attrs` =
    (lo, hi)."""
    op: Any
    args: tuple
    loc: Loc | None = None
    name: str = ""
    fn: sp.Lambda | None = None
    attrs: tuple = ()
    shape: tuple[int, ...] | None = None
    batched: bool = True

    @property
    def label(self) -> str:
        """The function's name for an elementwise call, else the op's."""
        return self.name or self.op.name


Expr = Union[Read, Lit, Call]


def walk(e: Expr):
    """Post-order over an expression tree, without recursion."""
    stack = [(e, False)]
    while stack:
        node, done = stack.pop()
        if done or not isinstance(node, Call):
            yield node
            continue
        stack.append((node, True))
        stack.extend((a, False) for a in reversed(node.args))


def transform(e: Expr, change) -> Expr:
    """`e` rebuilt bottom-up: `change(call, args)` (args already rebuilt) gives a
    call's replacement, or None to keep it (with the new args, if any changed).
    Iterative, as trees may be deep."""
    done: dict[int, Expr] = {}
    for node in walk(e):
        if not isinstance(node, Call):
            continue
        args = tuple(done.get(id(a), a) for a in node.args)
        new = change(node, args)
        if new is not None:
            done[id(node)] = new
        elif any(a is not b for a, b in zip(args, node.args)):
            done[id(node)] = replace(node, args=args)
    return done.get(id(e), e)


def reads(e: Expr) -> list[Read]:
    return [n for n in walk(e) if isinstance(n, Read)]


_INFIX = {"add": ("+", 1), "sub": ("-", 1), "mul": ("*", 2), "div": ("/", 2), "pow": ("**", 4)}


def expr_text(e: Expr, t: int | None = None, prec: int = 0) -> str:
    """Source-like text; with an integer `t` the time indices are concrete."""
    if isinstance(e, Lit):
        v = e.value
        return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(v)
    if isinstance(e, Read):
        if e.offset is None:
            return e.name
        if t is None:
            return f"{e.name}[t{e.offset:+d}]" if e.offset else f"{e.name}[t]"
        return f"{e.name}[{t + e.offset}]"
    return e.op.text(e, lambda a, p=0: expr_text(a, t, p), prec)


def infix_text(e: Call, sub, prec: int) -> str:
    """An elementwise call printed as an operator where it is one: a + b, -a."""
    if e.name in _INFIX:
        sym, p = _INFIX[e.name]
        s = f"{sub(e.args[0], p)} {sym} {sub(e.args[1], p + 1)}"
        return f"({s})" if prec > p else s
    if e.name == "neg":
        return f"-{sub(e.args[0], 5)}"
    return f"{e.label}({', '.join(sub(a) for a in e.args)})"


# -- declarations -------------------------------------------------------------

@dataclass
class Init:
    """An initializer call: zeros(), normal(std), uniform(a), orthogonal(gain),
    xavier(), spectral(radius), constant(v)."""
    kind: str
    args: tuple[SizeExpr, ...] = ()
    loc: Loc | None = None


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
class Model:
    """A model as written, not yet checked: what the parser and the builder make."""
    name: str
    dim_decls: dict[str, tuple[SizeExpr, Loc | None]]
    symbols: dict[str, Symbol]
    equations: list[Equation]
    loss: Loss | None = None
    functions: dict[str, sp.Lambda] = field(default_factory=dict)
    file: str = "<model>"
