"""Lowering: a recurrence in, a target-neutral step program out.

Parameter sharing says one period of the unfolded DAG is enough; the program
is that period, run inside time loops, plus what can leave the loop:

    program = lower(rec)
    print(program.listing())

Passes, each a function of the one before:

1. `extract`  — one period: a `Value` per op of every equation (the step
   templates of `unfolding`), leaves for params, inputs `x[t-k]` and state
   carries `s[t-k]`, and for each state an `assign` (with `lengths`, a masked
   one: m*new + (1-m)*s[t-1]).
2. `hoist`    — matmuls of an input (`U @ x[t]`) run for all t at once before
   the loop, one GEMM per input with the weights packed ([Wi; Wf; Wg; Wo]);
   their weight gradients are one GEMM after the backward loop.
3. `group`    — per-step matmuls of one operand become one packed matmul
   (the four LSTM gates `U* @ h[t-1]`).
4. `fuse`     — elementwise values of one size between the same barriers
   become one `Fused` stage: one sympy expression per output, and, by
   `sympy.diff`, one adjoint expression per input, written in terms of the
   stored outputs where possible (s*(1-s), 1-tanh^2), `cse`-shared.
5. `schedule` — stages in order, split into loops by direction (forward
   states, backward states, and what reads both); the memory plan: every
   per-step value is stored once per step for the backward pass.

Backends (`backends/numba_cpu.py`, `backends/numba_cuda.py`) print stages
into code; they never see the parser or the DAG.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from . import elementwise as ew
from .errors import ModelError
from .ir import Read, Recurrence, Reduce, Role
from .unfolding import LOSS, equations_with_loss, template

BARRIERS = ("concat", "slice", "sum", "mean", "mse", "softmax_cross_entropy")
LEAF_INPUTS = ("input", "target")
LEAVES = ("param", "input", "target", "carry", "mask", "hoisted")


@dataclass
class Value:
    """One value of a step: a leaf (param, input, carry, mask) or an op's result.

    id is a legal identifier, unique in the program.  size is the number of
    units per sequence (1 for a scalar); batched values are [B, size] per step."""
    id: str
    op: str
    args: tuple[str, ...] = ()
    size: int = 1
    batched: bool = True
    fn: sp.Lambda | None = None
    attrs: tuple = ()
    name: str = ""            # param / input / state name for leaves
    offset: int = 0           # inputs: t + offset; carries: steps back (in the state's direction)
    var: str | None = None    # the variable (equation left side) this value is
    shape: tuple = ()         # params: their own shape


@dataclass
class Fused:
    """One loop over (batch, unit): outputs = exprs(inputs); adjoints by sympy.diff."""
    id: str
    size: int
    inputs: list[str]
    outputs: list[str]
    exprs: dict[str, sp.Expr]            # output id -> expression of input symbols
    adjoints: dict[str, sp.Expr] = field(default_factory=dict)  # input id -> expression
    batched: bool = True


@dataclass
class MatMul:
    """out[:, lo:hi] = operand @ W.T for every (value, W, lo, hi) part: one packed matmul."""
    id: str
    operand: str
    parts: list[tuple[str, str, int, int]]
    size: int
    batched: bool = True


@dataclass
class Hoist:
    """The same, for an input read at t + shift, for all steps at once before the loop."""
    id: str
    input: str
    parts: list[tuple[str, str, int, int]]
    size: int
    shift: int = 0


@dataclass
class OpStage:
    """A barrier op (concat, slice, sum, mean, mse, softmax_cross_entropy)."""
    id: str
    value: str
    batched: bool = True


@dataclass
class Loop:
    direction: int            # +1: t = 1..T, -1: t = T..1
    stages: list
    label: str


@dataclass
class StateInfo:
    name: str
    size: int
    direction: int
    depth: int                # how many steps back it is read (>= 1)
    value: str                # the value id of its assign
    init: object              # a number or a param name


@dataclass
class Program:
    rec: Recurrence
    values: dict[str, Value]
    hoists: list[Hoist]
    statics: list                      # stages on params only, run once
    loops: list[Loop]
    states: list[StateInfo]
    outputs: dict[str, str]            # variable name -> value id
    loss: str | None                   # the loss term's value id
    reduce: Reduce | None
    masked: bool

    def stages(self):
        for s in self.statics:
            yield s
        for loop in self.loops:
            yield from loop.stages

    def listing(self) -> str:
        from .lower_text import listing
        return listing(self)


# -- 1. extract ---------------------------------------------------------------

class _Extract:
    def __init__(self, rec: Recurrence, masked: bool):
        self.rec, self.masked = rec, masked
        self.values: dict[str, Value] = {}
        self.outputs: dict[str, str] = {}

    def add(self, v: Value) -> str:
        self.values.setdefault(v.id, v)
        return v.id

    def leaf(self, r: Read) -> str:
        s = self.rec.symbols[r.name]
        if s.role in (Role.PARAM, Role.CONST):
            return self.add(Value(f"p_{r.name}", "param", size=s.shape[0] if s.shape else 1,
                                  batched=False, name=r.name, shape=s.shape))
        if s.role in (Role.INPUT, Role.TARGET):
            off = r.offset if s.timed else None
            vid = f"in_{r.name}" + ("" if not off else f"_m{-off}")
            op = "input" if s.role is Role.INPUT else "target"
            return self.add(Value(vid, op, size=s.shape[0], name=r.name, offset=off))
        if s.role is Role.STATE and r.offset:
            k = abs(r.offset)
            return self.add(Value(f"c_{r.name}_{k}", "carry", size=s.shape[0], name=r.name, offset=k))
        return self.outputs[r.name]  # a value of this step, defined earlier in step order

    def run(self):
        for name, expr, _ in equations_with_loss(self.rec):
            root = self.equation(name, expr)
            s = self.rec.symbols.get(name)
            if s is not None and s.role is Role.STATE:
                root = self.assign(s, root)
            self.outputs[name] = root
        return self.values, self.outputs

    def equation(self, name: str, expr) -> str:
        instrs = template(expr)
        if not instrs:  # `o[t] = x[t]`: a value of its own, so the output has a buffer
            src = self.values[self.leaf(expr)]
            a = ew.arg_symbols(1)
            return self.add(Value(f"v_{name}", "ew", (src.id,), src.size, src.batched,
                                  sp.Lambda(a, a[0]), var=name))
        ids: list[str] = []
        for j, ins in enumerate(instrs):
            args = tuple(ids[a[1]] if isinstance(a, tuple) else self.leaf(a) for a in ins.args)
            node = ins.node
            last = j == len(instrs) - 1
            vid = f"{name}_{j}" if not last else f"v_{name}"
            ids.append(self.add(Value(vid, ins.op, args, node.shape[0] if node.shape else 1,
                                      node.batched, node.fn, node.attrs, var=name if last else None)))
        return ids[-1]

    def assign(self, s, root: str) -> str:
        """A state's value: its equation, or with lengths m*new + (1-m)*s[t-1]."""
        r = self.values[root]
        if not self.masked and r.op == "ew" and r.batched and r.size == s.shape[0] and r.var == s.name:
            return root
        a = ew.arg_symbols(3 if self.masked else 1)
        args = (root,)
        fn = sp.Lambda(a, a[0])
        if self.masked:
            mask = self.add(Value("mask", "mask", size=1))
            prev = self.leaf(Read(s.name, -s.direction))
            args, fn = (root, mask, prev), sp.Lambda(a, a[1] * a[0] + (1 - a[1]) * a[2])
        return self.add(Value(f"s_{s.name}", "ew", args, s.shape[0], True, fn, var=s.name))


def extract(rec: Recurrence, masked: bool = False):
    return _Extract(rec, masked).run()


# -- 2. hoist and 3. group ----------------------------------------------------

def _depends_on_state(values: dict[str, Value]) -> dict[str, bool]:
    dep = {}
    for vid, v in values.items():  # values are in dependency order
        dep[vid] = v.op in ("carry", "mask") or any(dep[a] for a in v.args)
    return dep


def hoist(values: dict[str, Value]) -> list[Hoist]:
    """Group matmuls of a timed input into one GEMM per input, packed."""
    groups: dict[str, list[Value]] = {}
    for v in values.values():
        if v.op == "matmul" and values[v.args[1]].op in LEAF_INPUTS and values[v.args[1]].offset is not None:
            groups.setdefault(v.args[1], []).append(v)
    hoists = []
    for operand, members in groups.items():
        parts, lo = [], 0
        for v in members:
            parts.append((v.id, values[v.args[0]].name, lo, lo + v.size))
            lo += v.size
        x = values[operand]
        hoists.append(Hoist(f"P_{operand[3:]}", x.name, parts, lo, x.offset))
        for v in members:
            v.op = "hoisted"
    return hoists


def group(values: dict[str, Value]) -> dict[str, MatMul]:
    """Per-step matmuls of one operand -> one packed MatMul, keyed by member id."""
    by_operand: dict[str, list[Value]] = {}
    for v in values.values():
        if v.op == "matmul":
            by_operand.setdefault(v.args[1], []).append(v)
    stage_of = {}
    for operand, members in by_operand.items():
        parts, lo = [], 0
        for v in members:
            parts.append((v.id, values[v.args[0]].name, lo, lo + v.size))
            lo += v.size
        mm = MatMul(f"M_{operand}", operand, parts, lo, values[operand].batched)
        for v in members:
            stage_of[v.id] = mm
    return stage_of


# -- 4. fuse ------------------------------------------------------------------

def _levels(values: dict[str, Value]) -> dict[str, int]:
    """Barriers (matmuls, reductions, ...) raise the level; elementwise values of
    one level have no barrier between them, so they can share a loop."""
    level = {}
    for vid, v in values.items():
        base = max((level[a] for a in v.args), default=0)
        level[vid] = base + (v.op not in ("ew", *LEAVES))
    return level


def symbol(vid: str) -> sp.Symbol:
    return sp.Symbol(vid, real=True)


def grad_symbol(vid: str) -> sp.Symbol:
    return sp.Symbol(f"g_{vid}", real=True)


def fusion_groups(values: dict[str, Value], loop_of: dict[str, str]) -> dict[str, tuple]:
    """value id -> its group key (level, size, batched, loop), for elementwise values."""
    level = _levels(values)
    return {v.id: (level[v.id], v.size, v.batched, loop_of[v.id])
            for v in values.values() if v.op == "ew"}


def needed(values, groups, outputs, loss) -> set[str]:
    """Values to store: read outside their own group, a variable, or the loss term."""
    out = set(outputs.values()) | ({loss} if loss else set())
    for v in values.values():
        for a in v.args:
            if a not in groups or groups.get(v.id) != groups[a]:
                out.add(a)
    return out


def fuse(values: dict[str, Value], groups: dict[str, tuple], stored: set[str],
         read: set[str]) -> dict[str, Fused]:
    """One Fused stage per group, keyed by member id.  `read`: values whose
    adjoint can be nonzero (something outside the group reads them)."""
    members: dict[tuple, list[Value]] = {}
    for vid, key in groups.items():
        members.setdefault(key, []).append(values[vid])
    stage_of = {}
    for n, (key, vs) in enumerate(members.items()):
        ids = {v.id for v in vs}
        inputs: list[str] = []
        exprs: dict[str, sp.Expr] = {}
        for v in vs:  # in dependency order
            args = []
            for a in v.args:
                if a not in ids:
                    inputs += [a] if a not in inputs else []
                args.append(exprs[a] if a in ids else symbol(a))
            exprs[v.id] = ew.compose(v.fn, args)
        outputs = [v.id for v in vs if v.id in stored]
        st = Fused(f"F{n}", key[1], inputs, outputs, {o: exprs[o] for o in outputs}, batched=key[2])
        st.adjoints = adjoints(st, values, [o for o in outputs if o in read])
        for v in vs:
            stage_of[v.id] = st
    return stage_of


def adjoints(st: Fused, values: dict[str, Value], carrying: list[str]) -> dict[str, sp.Expr]:
    """d(input) = sum_j g_j * d out_j / d input over the outputs that carry an
    adjoint, written in terms of stored outputs."""
    big_first = sorted(st.exprs.items(), key=lambda kv: -sp.count_ops(kv[1]))
    adj = {}
    for a in st.inputs:
        if values[a].op in ("mask", "target"):
            continue
        total = sum((grad_symbol(o) * sp.diff(st.exprs[o], symbol(a)) for o in carrying), sp.Integer(0))
        if total == 0:
            continue
        for o, e in big_first:  # s*(1-s) rather than sigmoid(x)*(1-sigmoid(x))
            if not e.is_Symbol:
                total = total.subs(e, symbol(o))
        adj[a] = total
    return adj


# -- 5. schedule --------------------------------------------------------------

def _needed(values, outputs, loss) -> set[str]:
    """Values that must be materialized: read by another stage, a variable, or the loss."""
    needed = set(outputs.values())
    if loss:
        needed.add(loss)
    for v in values.values():
        for a in v.args:
            if v.op != "ew" or values[a].op != "ew":
                needed.add(a)
    return needed


def lower(rec: Recurrence, masked: bool = False) -> Program:
    """The step program of `rec`; `masked` for runs with `lengths`."""
    values, outputs = extract(rec, masked)
    loss = outputs.pop(LOSS, None)
    hoists = hoist(values)
    matmuls = group(values)
    loop_of = _loops(rec, values)
    groups = fusion_groups(values, loop_of)
    read = needed(values, groups, {s.name: outputs[s.name] for s in rec.states}, loss)
    fused = fuse(values, groups, needed(values, groups, outputs, loss), read)
    statics, loops = _schedule(values, {**matmuls, **fused}, loop_of,
                               {s.name: outputs[s.name] for s in rec.states})
    states = [StateInfo(s.name, s.shape[0], s.direction, max(1, rec.max_delay(s.name)),
                        outputs[s.name], s.init) for s in rec.states]
    return Program(rec, values, hoists, statics, loops, states, outputs, loss,
                   rec.loss.reduce if rec.loss else None, masked)


def _schedule(values: dict[str, Value], stage_of: dict, loop_of: dict[str, str], state_value: dict):
    """Stages in dependency order, split into the static prologue and time loops."""
    import graphlib
    stages, deps = {}, {}
    for vid, v in values.items():
        if v.op in LEAVES:
            continue
        st = stage_of.setdefault(vid, OpStage(f"op_{vid}", vid, v.batched))
        stages.setdefault(st.id, st)
        deps.setdefault(st.id, set()).update(stage_of[a].id for a in v.args
                                             if a in stage_of and stage_of[a].id != st.id)
    statics, loops = [], {}
    for sid in graphlib.TopologicalSorter(deps).static_order():
        st = stages[sid]
        member = next(vid for vid, s in stage_of.items() if s is st)
        (statics if not st.batched else loops.setdefault(loop_of[member], [])).append(st)
    direction = {"pre": 1, "forward": 1, "backward": -1, "post": 1}
    return statics, [Loop(direction[label], loops[label], label)
                     for label in _loop_order(values, loop_of, state_value, set(loops))]


def _loop_order(values, loop_of, state_value, labels) -> list[str]:
    """pre, forward, backward, post -- unless a loop reads a state of a later one
    (a forward state reading g[t+1] of a backward state g): then that one first."""
    deps = {label: set() for label in labels}
    for vid, v in values.items():
        for a in v.args:
            src = values[a]
            if src.op == "carry":
                a = state_value[src.name]
            elif src.op in LEAVES:
                continue
            if loop_of[vid] in labels and loop_of[a] in labels and loop_of[a] != loop_of[vid]:
                deps[loop_of[vid]].add(loop_of[a])
    order, preferred = [], [x for x in ("pre", "forward", "backward", "post") if x in labels]
    while preferred:
        ready = next((x for x in preferred if deps[x] <= set(order)), None)
        if ready is None:
            raise ModelError("the time loops depend on each other in a cycle: " + ", ".join(preferred),
                             None, "forward and backward states that do not read each other")
        order.append(ready)
        preferred.remove(ready)
    return order


def _loops(rec: Recurrence, values: dict[str, Value]) -> dict[str, str]:
    """Which time loop each value runs in: `forward` (what forward states need),
    `backward`, `pre` (reads no state) and `post` (reads both directions).
    With only forward states, everything runs in one loop.

    A value's directions are those of the states it reads; a carry s[t-k] has
    the directions of s's own value, found by iterating to a fixed point (a
    forward state reading a backward one runs in `post`, and so does its carry)."""
    if all(s.direction > 0 for s in rec.states):
        return {vid: "forward" for vid in values}
    own = {vid: {rec.symbols[v.var].direction} for vid, v in values.items()
           if v.var in rec.symbols and rec.symbols[v.var].role is Role.STATE}
    state_value = {values[vid].var: vid for vid in own}
    carried = {s.name: {s.direction} for s in rec.states}
    while True:
        dirs: dict[str, set] = {}
        for vid, v in values.items():
            d = set(own.get(vid, ())) | (carried[v.name] if v.op == "carry" else set())
            for a in v.args:
                d |= dirs[a]
            dirs[vid] = d
        new = {name: dirs[state_value[name]] if name in state_value else carried[name] for name in carried}
        if new == carried:
            break
        carried = new
    label = {frozenset(): "pre", frozenset({1}): "forward", frozenset({-1}): "backward"}
    return {vid: label.get(frozenset(d), "post") for vid, d in dirs.items()}