"""The checker: an unchecked `Recurrence` in, a checked one out.

It resolves dims and shapes, adds the per-step intermediates (left sides that
are not declared), validates every read (`h[t-1]` of a forward state, never
`h[t+1]`; `o[t-1]` only if `o` is a state), orders the equations of one step by
their zero-delay dependencies, and rejects algebraic loops by naming the cycle:

    a[t] = tanh(b[t]); b[t] = 2 * a[t]   ->   algebraic loop: a[t] -> b[t] -> a[t]

Every error is a `ModelError` at the offending text.
"""
from __future__ import annotations

import dataclasses

import networkx as nx
import sympy as sp

from . import elementwise as ew
from .errors import ModelError
from .ir import (Equation, Lit, Loss, Read, Recurrence, Role, Symbol,
                 eval_size, expr_text, reads, size_text)


def check(rec: Recurrence) -> Recurrence:
    dims = _resolve_dims(rec)
    symbols = {k: dataclasses.replace(s) for k, s in rec.symbols.items()}
    for s in symbols.values():
        s.shape = tuple(_size(d, dims, s) for d in s.dims)
    for eq in rec.equations:
        _define(eq, symbols)
    _check_reads(rec, symbols)
    order = _step_order(rec, symbols)
    checker = _Shapes(symbols, dims)
    equations = []
    for eq in order:
        expr = checker.annotate(eq.expr)
        sym = symbols[eq.name]
        if sym.role is Role.INTER:
            sym.shape = expr.shape
        elif expr.shape != sym.shape:
            raise ModelError(f"`{eq.name}[t]` is declared {_shape(sym.shape, sym)} but its equation gives "
                             f"{_shape(expr.shape)}", eq.loc, f"an expression of shape {_shape(sym.shape, sym)}")
        equations.append(Equation(eq.name, expr, eq.loc))
    for s in symbols.values():
        if s.role is Role.STATE:
            _check_state_init(s, symbols)
    loss = None
    if rec.loss:
        expr = checker.annotate(rec.loss.expr)
        if expr.shape != ():
            raise ModelError(f"the loss term must be a scalar per step; this one is {_shape(expr.shape)}",
                             rec.loss.expr.loc, "a scalar: wrap it in sum(...), mean(...), mse(...) "
                             "or softmax_cross_entropy(...)")
        loss = Loss(rec.loss.reduce, expr, rec.loss.loc)
    return dataclasses.replace(rec, symbols=symbols, equations=equations, loss=loss, dims=dims,
                               unchecked=rec)


# -- dims and declarations ----------------------------------------------------

def _resolve_dims(rec: Recurrence) -> dict[str, int]:
    dims: dict[str, int] = {}
    for name, (e, loc) in rec.dim_decls.items():
        try:
            v = eval_size(e, dims)
        except KeyError as k:
            raise ModelError(f"undeclared dim `{k.args[0]}`", loc, "a dim declared before this one") from None
        if not isinstance(v, int) or v < 1:
            raise ModelError(f"dim {name} = {v} is not a positive whole number", loc, "dim(n) with n >= 1")
        dims[name] = v
    return dims


def _size(e, dims, sym: Symbol) -> int:
    try:
        v = eval_size(e, dims)
    except KeyError as k:
        raise ModelError(f"undeclared dim `{k.args[0]}` in the shape of `{sym.name}`", sym.loc,
                         "a dim declared with `name = dim(n)`") from None
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

def _all_exprs(rec: Recurrence):
    yield from ((eq.name, eq.expr) for eq in rec.equations)
    if rec.loss:
        yield None, rec.loss.expr


def _check_reads(rec: Recurrence, symbols: dict[str, Symbol]):
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


def _step_order(rec: Recurrence, symbols: dict[str, Symbol]) -> list[Equation]:
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
    return [rec.equation(n) for n in order]


def _check_directions(rec: Recurrence, symbols: dict[str, Symbol], g: nx.DiGraph):
    """A forward state may not depend, within a step, on a backward one."""
    for s in symbols.values():
        if s.role is not Role.STATE:
            continue
        for a in nx.ancestors(g, s.name):
            other = symbols[a]
            if other.role is Role.STATE and other.direction != s.direction:
                raise ModelError(f"state `{s.name}` runs {'forward' if s.direction > 0 else 'backward'} "
                                 f"but reads `{a}[t]`, which runs the other way", rec.equation(s.name).loc,
                                 "states of one direction to depend on each other only; "
                                 "combine both directions in an output")


def _check_crossing(rec: Recurrence, symbols: dict[str, Symbol]):
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
    """Annotates expressions with shape and batchedness, bottom-up."""

    def __init__(self, symbols: dict[str, Symbol], dims: dict[str, int]):
        self.symbols, self.dims = symbols, dims

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
        e = dataclasses.replace(e, args=args)
        return getattr(self, "op_" + e.op)(e, args)

    def _no_literals(self, e, args):
        for a in args:
            if isinstance(a, Lit):
                raise ModelError(f"{e.op}() cannot take a number", a.loc, "a variable or an expression")

    def op_matmul(self, e, args):
        self._no_literals(e, args)
        a, v = args
        if a.batched or len(a.shape) != 2:
            raise ModelError(f"the left side of `@` must be a param or const matrix; {self.describe(a)}"
                             + (" and changes every step" if a.batched else ""), a.loc,
                             "W @ v with W = param(m, n)")
        if len(v.shape) != 1 or v.shape[0] != a.shape[1]:
            raise ModelError(f"shape mismatch in `{expr_text(e)}`: {self.describe(a)} but {self.describe(v)}",
                             e.loc, f"a vector of length {a.shape[1]} (the columns of {expr_text(a)})")
        return dataclasses.replace(e, shape=(a.shape[0],), batched=v.batched)

    def op_ew(self, e, args):
        shapes = {a.shape for a in args if not isinstance(a, Lit) and a.shape != ()}
        if len(shapes) > 1:
            a, b = [a for a in args if not isinstance(a, Lit)][:2]
            raise ModelError(f"shape mismatch in `{expr_text(e)}`: {self.describe(a)} but {self.describe(b)}",
                             e.loc, "elementwise operands of one shape (or scalars)")
        literals = {i: a.value for i, a in enumerate(args) if isinstance(a, Lit)}
        if len(literals) == len(args):  # all numbers: fold to one number
            return Lit(float(ew.compose(e.fn, [sp.nsimplify(a.value) for a in args])), e.loc)
        fn = ew.bind_literals(e.fn, literals) if literals else e.fn
        if len(fn.expr.atoms(sp.zoo, sp.nan)):
            raise ModelError(f"`{expr_text(e)}` is undefined for these numbers", e.loc)
        return dataclasses.replace(e, fn=fn, shape=shapes.pop() if shapes else (),
                                   batched=any(a.batched for a in args))

    def _vector(self, e, a):
        if len(a.shape) != 1:
            raise ModelError(f"{e.op}() needs a vector; {self.describe(a)}", a.loc, "a vector")

    def op_concat(self, e, args):
        self._no_literals(e, args)
        for a in args:
            self._vector(e, a)
        return dataclasses.replace(e, shape=(sum(a.shape[0] for a in args),),
                                   batched=any(a.batched for a in args))

    def op_slice(self, e, args):
        (a,) = args
        self._vector(e, a)
        try:
            lo, hi = (eval_size(x, self.dims) for x in e.attrs)
        except KeyError as k:
            raise ModelError(f"undeclared dim `{k.args[0]}` in a slice", e.loc) from None
        if not (0 <= lo < hi <= a.shape[0]):
            raise ModelError(f"slice [{lo}:{hi}] is out of range: {self.describe(a)}", e.loc,
                             f"0 <= lo < hi <= {a.shape[0]}")
        return dataclasses.replace(e, attrs=(lo, hi), shape=(hi - lo,), batched=a.batched)

    def _reduce(self, e, args):
        self._no_literals(e, args)
        for a in args:
            self._vector(e, a)
        if len(args) == 2 and args[0].shape != args[1].shape:
            raise ModelError(f"shape mismatch in `{expr_text(e)}`: {self.describe(args[0])} but "
                             f"{self.describe(args[1])}", e.loc, "two vectors of one shape")
        return dataclasses.replace(e, shape=(), batched=any(a.batched for a in args))

    op_sum = op_mean = op_mse = op_softmax_cross_entropy = _reduce

