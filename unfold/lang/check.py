"""The checker: a `Model` as written in, its checked parts out.

It resolves dims and shapes, adds the per-step intermediates (left sides that
are not declared), validates every read (`h[t-1]` of a forward state, never
`h[t+1]`; `o[t-1]` only if `o` is a state), orders the equations of one step by
their zero-delay dependencies, and rejects algebraic loops by naming the cycle:

    a[t] = tanh(b[t]); b[t] = 2 * a[t]   ->   algebraic loop: a[t] -> b[t] -> a[t]

Every error is a `ModelError` at the offending text.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import networkx as nx
import sympy as sp

from . import initializers
from . import mathcheck as mc
from .errors import ModelError
from .ir import Equation, Lit, Loss, Model, Read, Role, Symbol, expr_text, reads
from .ops.base import snippet
from .sizes import SizeError, eval_size, size_text


@dataclass
class Checked:
    """What checking a model adds: dims, shapes, step order."""
    dims: dict[str, int]
    symbols: dict[str, Symbol]
    equations: list[Equation]
    loss: Loss | None


def check(rec: Model) -> Checked:
    dims = _resolve_dims(rec)
    symbols = {k: dataclasses.replace(s) for k, s in rec.symbols.items()}
    for s in symbols.values():
        _check_rank(s)
        s.shape = tuple(_size(d, dims, s) for d in s.dims)
        initializers.check(s, dims)
    for eq in rec.equations:
        _define(eq, symbols)
    _check_reads(rec, symbols)
    order = _step_order(rec, symbols)
    checker = _Shapes(symbols, dims)
    equations = [_check_equation(eq, symbols, checker) for eq in order]
    for s in symbols.values():
        if s.role is Role.STATE:
            _check_state_init(s, symbols)
    return Checked(dims, symbols, equations, _check_loss(rec, checker))


def _check_equation(eq: Equation, symbols: dict[str, Symbol], checker: "_Shapes") -> Equation:
    expr = checker.annotate(eq.expr)
    sym = symbols[eq.name]
    if isinstance(expr, Lit):
        raise ModelError(f"`{eq.name}[t] = {expr_text(expr)}` is a constant, the same at every step", eq.loc,
                         f"an expression that reads a variable; a fixed value is a const: "
                         f"{eq.name} = const(<size>, init=constant({expr_text(expr)}))")
    if sym.role is Role.INTER:
        sym.shape = expr.shape
    elif expr.shape != sym.shape:
        raise ModelError(f"`{eq.name}[t]` is declared {_shape(sym.shape, sym)} but its equation gives "
                         f"{_shape(expr.shape)}", eq.loc, f"an expression of shape {_shape(sym.shape, sym)}")
    return Equation(eq.name, expr, eq.loc)


def _check_loss(rec: Model, checker: "_Shapes") -> Loss | None:
    if not rec.loss:
        return None
    expr = checker.annotate(rec.loss.expr)
    if isinstance(expr, Lit):
        raise ModelError("the loss term is a constant", rec.loss.expr.loc,
                         "a term that reads the model's variables, e.g. mse(h[t], y[t])")
    if expr.shape != ():
        raise ModelError(f"the loss term must be a scalar per step; this one is {_shape(expr.shape)}",
                         rec.loss.expr.loc, "a scalar: wrap it in sum(...), mean(...), mse(...) "
                         "or softmax_cross_entropy(...)")
    return Loss(rec.loss.reduce, expr, rec.loss.loc)


# -- dims and declarations ----------------------------------------------------

def _resolve_dims(rec: Model) -> dict[str, int]:
    dims: dict[str, int] = {}
    for name, (e, loc) in rec.dim_decls.items():
        try:
            v = eval_size(e, dims)
        except KeyError as k:
            raise ModelError(f"undeclared dim `{k.args[0]}`", loc, "a dim declared before this one") from None
        except SizeError as err:
            raise ModelError(f"dim {name}: {err}", loc, "dim(n) with a whole number 1 <= n <= 2**53") from None
        if not isinstance(v, int) or v < 1:
            raise ModelError(f"dim {name} = {v} is not a positive whole number", loc, "dim(n) with n >= 1")
        dims[name] = v
    return dims


#: role -> (the numbers of sizes it may have, what that means, an example)
_RANKS = {Role.INPUT: ((1,), "a vector per step", "input(D), or input(1) for a sequence of scalars"),
          Role.TARGET: ((1,), "a vector per step", "target(K), or target(1) for a sequence of scalars"),
          Role.STATE: ((1,), "a vector per step", "state(H, init=0), or state(1, init=0) for a scalar"),
          Role.PARAM: ((0, 1, 2), "a scalar, a vector or a matrix", "param(), param(H) or param(H, D)"),
          Role.CONST: ((0, 1, 2), "a scalar, a vector or a matrix", "const(), const(H) or const(H, D)")}


def _check_rank(sym: Symbol):
    ranks, what, example = _RANKS[sym.role]
    if len(sym.dims) not in ranks:
        sizes = "no size" if not sym.dims else f"{len(sym.dims)} sizes"
        raise ModelError(f"`{sym.name}` is declared with {sizes}, but {sym.role.value}s are {what}",
                         sym.loc, example)


def _size(e, dims, sym: Symbol) -> int:
    try:
        v = eval_size(e, dims)
    except KeyError as k:
        raise ModelError(f"undeclared dim `{k.args[0]}` in the shape of `{sym.name}`", sym.loc,
                         "a dim declared with `name = dim(n)`") from None
    except SizeError as err:
        raise ModelError(f"the shape of `{sym.name}`: {err}", sym.loc, "positive whole sizes") from None
    if not isinstance(v, int) or v < 1:
        raise ModelError(f"`{sym.name}` has a size {size_text(e)} = {v}", sym.loc, "positive whole sizes")
    return v


def _define(eq: Equation, symbols: dict[str, Symbol]):
    sym = symbols.get(eq.name)
    if sym is None:
        symbols[eq.name] = Symbol(eq.name, Role.INTER, loc=eq.loc)
    elif sym.role is not Role.STATE:
        raise ModelError(f"`{eq.name}` is a {sym.role.value}; it cannot have an equation", eq.loc,
                         "an equation for a state or for a new per-step variable")


def _check_state_init(s: Symbol, symbols: dict[str, Symbol]):
    if s.init is None:
        raise ModelError(f"state `{s.name}` has no initial value", s.loc,
                         f"{s.name} = state(..., init=0) or init=<param name>")
    if isinstance(s.init, str):
        p = symbols.get(s.init)
        if p is None or p.role not in (Role.PARAM, Role.CONST):
            raise ModelError(f"the initial value `{s.init}` of state `{s.name}` is not a param or const",
                             s.loc, "a number or a declared param")
        if p.shape not in ((), s.shape):
            raise ModelError(f"the initial value `{s.init}` is {_shape(p.shape, p)} but state "
                             f"`{s.name}` is {_shape(s.shape, s)}", s.loc, "the state's shape or a scalar")


# -- reads, order, loops ------------------------------------------------------

def _all_exprs(rec: Model):
    yield from ((eq.name, eq.expr) for eq in rec.equations)
    if rec.loss:
        yield None, rec.loss.expr


def _check_reads(rec: Model, symbols: dict[str, Symbol]):
    used: dict[str, bool] = {}
    for owner, expr in _all_exprs(rec):
        for r in reads(expr):
            s = symbols.get(r.name)
            if s is None:
                raise ModelError(f"unknown name `{r.name}`", r.loc,
                                 "a declared symbol or the left side of an equation")
            if s.role in (Role.PARAM, Role.CONST):
                if r.offset is not None:
                    raise ModelError(f"`{r.name}` is a {s.role.value}, shared by every step", r.loc,
                                     f"`{r.name}` without a time index")
                continue
            if s.role in (Role.INPUT, Role.TARGET):
                timed = r.offset is not None
                if used.setdefault(r.name, timed) != timed:
                    raise ModelError(f"`{r.name}` is read both with and without a time index", r.loc,
                                     f"{r.name}[t] everywhere (a sequence) or {r.name} everywhere (one per sequence)")
                s.timed = timed
                if timed and r.offset > 0:
                    raise ModelError(f"`{r.name}[t{r.offset:+d}]` reads an {s.role.value} from the future",
                                     r.loc, f"{r.name}[t] or {r.name}[t-k]")
                continue
            if r.offset is None:
                raise ModelError(f"`{r.name}` changes every step", r.loc, f"{r.name}[t] or {r.name}[t-1]")
            if s.role is Role.INTER and r.offset != 0:
                raise ModelError(f"`{r.name}[t{r.offset:+d}]` needs a value before the first step, but "
                                 f"`{r.name}` has no initial value", r.loc,
                                 f"`{r.name}` declared as a state: {r.name} = state(<size>, init=0)")
            if s.role is Role.STATE and r.offset * s.direction > 0:
                kind = "forward" if s.direction > 0 else "backward"
                raise ModelError(f"`{r.name}[t{r.offset:+d}]` reads {kind} state `{r.name}` from the "
                                 f"{'future' if s.direction > 0 else 'past'}", r.loc,
                                 f"{r.name}[t{-s.direction:+d}] or further back in its direction"
                                 + (", or state(..., direction=\"backward\")" if s.direction > 0 else ""))
    for s in symbols.values():
        if s.role is Role.STATE and not any(eq.name == s.name for eq in rec.equations):
            raise ModelError(f"state `{s.name}` has no equation", s.loc, f"a line `{s.name}[t] = ...`")


def _step_order(rec: Model, symbols: dict[str, Symbol]) -> list[Equation]:
    """Equations in an order where everything read at [t] comes first."""
    g = nx.DiGraph()
    at = {}
    for eq in rec.equations:
        g.add_node(eq.name)
        for r in reads(eq.expr):
            if r.offset == 0 and symbols[r.name].role in (Role.STATE, Role.INTER):
                g.add_edge(r.name, eq.name)
                at[(r.name, eq.name)] = r
    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle:
        names = [u for u, _ in cycle] + [cycle[0][0]]
        first = at[cycle[-1]]
        raise ModelError("algebraic loop: " + " -> ".join(f"{n}[t]" for n in names) +
                         " depends on itself with no delay", first.loc,
                         "one read in the cycle to be delayed, e.g. " + f"{first.name}[t-1] (a state)")
    _check_directions(rec, symbols, g)
    _check_crossing(rec, symbols)
    pos = {eq.name: i for i, eq in enumerate(rec.equations)}
    order = nx.lexicographical_topological_sort(g, key=lambda n: pos[n])
    by_name = {eq.name: eq for eq in rec.equations}
    return [by_name[n] for n in order]


def _check_directions(rec: Model, symbols: dict[str, Symbol], g: nx.DiGraph):
    """A forward state may not depend, within a step, on a backward one."""
    for s in symbols.values():
        if s.role is not Role.STATE:
            continue
        for a in nx.ancestors(g, s.name):
            other = symbols[a]
            if other.role is Role.STATE and other.direction != s.direction:
                raise ModelError(f"state `{s.name}` runs {'forward' if s.direction > 0 else 'backward'} "
                                 f"but reads `{a}[t]`, which runs the other way", next(eq.loc for eq in rec.equations if eq.name == s.name),
                                 "states of one direction to depend on each other only; "
                                 "combine both directions in an output")


def _check_crossing(rec: Model, symbols: dict[str, Symbol]):
    """Reject a forward and a backward state that depend on each other through
    any delays.  Unfolded, every state also reads its own previous instance
    (`hold`), so h[t] -> h[t+1] and g[t+1] -> g[t]; with h[t] reading g[t+k]
    and g reading h[t-j], the delays of some cycle cancel out and an instance
    needs itself (h[t] = f(g[t+1]), g[t] = f(h[t-1]): h[1] <- g[2] <- h[1])."""
    g = nx.DiGraph()
    for eq in rec.equations:
        for r in reads(eq.expr):
            if symbols[r.name].role in (Role.STATE, Role.INTER):
                g.add_edge(r.name, eq.name, read=r)
    for part in nx.strongly_connected_components(g):
        directions = {symbols[n].direction: n for n in part if symbols[n].role is Role.STATE}
        if len(directions) == 2:
            a, b = directions[1], directions[-1]
            cycle = nx.shortest_path(g, a, b) + nx.shortest_path(g, b, a)[1:]
            raise ModelError(f"loop across steps: {' -> '.join(cycle)}: forward state `{a}` and "
                             f"backward state `{b}` read each other, so once unfolded a step "
                             "needs itself", g.edges[cycle[-2], cycle[-1]]["read"].loc,
                             "a backward state that reads no forward state, or the reverse; "
                             "combine both directions in an output")


# -- shapes -------------------------------------------------------------------

def _shape(shape, sym: Symbol | None = None) -> str:
    if shape == ():
        return "a scalar"
    if sym is not None and sym.dims and len(sym.dims) == len(shape):
        return "[" + ", ".join(f"{size_text(d)}={n}" if not isinstance(d, int) else str(n)
                               for d, n in zip(sym.dims, shape)) + "]"
    return "[" + ", ".join(map(str, shape)) + "]"


class _Shapes:
    """Annotates expressions with shape and batchedness, bottom-up, by each
    op's shape rule (`Op.shape`); the helpers below are what those rules use."""

    def __init__(self, symbols: dict[str, Symbol], dims: dict[str, int]):
        self.symbols, self.dims = symbols, dims
        self.math: dict[int, tuple] = {}  # id(elementwise call) -> (the call, its expanded sympy math)
        self.counts: dict[str, int] = {}  # op name -> how many were numbered (dropout's sites)

    def count(self, what: str) -> int:
        """0, 1, 2, ...: a number per call of an op that needs one, in step order."""
        n = self.counts[what] = self.counts.get(what, -1) + 1
        return n

    def describe(self, e) -> str:
        sym = self.symbols.get(e.name) if isinstance(e, Read) else None
        return f"`{expr_text(e)}` is {_shape(e.shape, sym)}"

    def annotate(self, e):
        if isinstance(e, Lit):
            return e
        if isinstance(e, Read):
            s = self.symbols[e.name]
            return dataclasses.replace(e, shape=s.shape, batched=s.batched)
        args = tuple(self.annotate(a) for a in e.args)
        return e.op.shape(dataclasses.replace(e, args=args), args, self)

    def no_literals(self, e, args):
        for a in args:
            if isinstance(a, Lit):
                raise ModelError(f"{e.op.name}() cannot take a number", a.loc, "a variable or an expression")

    def elementwise(self, e, args):
        """Check the math of elementwise call `e` with the elementwise calls
        below it expanded, as the fuse pass will: real, and small enough for
        sympy's derivatives and the printers.  `args`: e.fn's arguments."""
        inner = [self.math[id(a)][1] if id(a) in self.math else sp.Dummy(real=True) for a in args]
        try:
            expr = mc.compose_bounded(e.fn, inner)
        except mc.TooLarge as err:
            raise ModelError(f"this expression {err}", e.loc, mc.BOUNDS_HELP) from None
        why = mc.problem(expr)
        if why:
            raise ModelError(f"`{snippet(e)}` {why}", e.loc, mc.REAL_HELP)
        too_big = mc.too_big(expr)
        if too_big:
            raise ModelError(f"this expression {too_big}", e.loc, mc.BOUNDS_HELP)
        self.math[id(e)] = (e, expr)  # the call is kept alive with its id
