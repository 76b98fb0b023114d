"""Pass 1, extract: one period of the DAG as values.

The step templates of `unfold.graph.unfolding` (the same ones `unfold`
instantiates τ times) become one `Value` per op, plus leaves: a param, an
input read at t - k, a state's carry s[t-k], the mask.  A state's value is
its equation's, or with `lengths` `where(mask, new, s[t-1])`: a finished
sequence keeps its state.  Every id comes from the program's namespace, so
a user's `c_h` and the carry of `h` can never share one.

    extract(Program(rec, masked=False)).values   # {'Wi': param, 'x': input, 'h_m1': carry, ...}
"""
from __future__ import annotations

import dataclasses

import sympy as sp

from ...graph.unfolding import LOSS, equations_with_loss, template
from ...lang import elementwise as ew
from ...lang.ir import Read, Role
from ...lang.ops import EW
from ..program import Leaf, Program, StateInfo, Value


class _Extract:
    def __init__(self, p: Program):
        self.p, self.rec = p, p.rec
        self.values: dict[str, Value] = {}
        self.leaves: dict[tuple, str] = {}
        self.ops: dict[tuple, str] = {}   # (op, args, fn, attrs) -> the value computing it
        self.outputs: dict[str, str] = {}

    def add(self, hint: str, **fields) -> str:
        vid = self.p.names.fresh(hint)
        assert vid not in self.values, f"value id {vid} handed out twice"
        self.values[vid] = Value(vid, **fields)
        return vid

    def leaf(self, r: Read) -> str:
        """The value a read refers to: a leaf (made once) or a value of this step."""
        s = self.rec.symbols[r.name]
        if s.role in (Role.STATE, Role.INTER) and not r.offset:
            return self.outputs[r.name]  # defined earlier in step order
        key = (r.name, r.offset)
        if key not in self.leaves:
            self.leaves[key] = self.make_leaf(s, r.offset)
        return self.leaves[key]

    def make_leaf(self, s, offset) -> str:
        size = s.shape[0] if s.shape else 1
        if s.role in (Role.PARAM, Role.CONST):
            return self.add(s.name, size=size, batched=False, leaf=Leaf.PARAM, name=s.name, role=s.role,
                            shape=s.shape)
        if s.role in (Role.INPUT, Role.TARGET):
            off = offset if s.timed else None
            return self.add(s.name + (f"_m{-off}" if off else ""), size=size, leaf=Leaf.INPUT,
                            name=s.name, role=s.role, offset=off)
        k = abs(offset)
        return self.add(f"{s.name}_{'m' if s.direction > 0 else 'p'}{k}", size=size, leaf=Leaf.CARRY,
                        name=s.name, role=s.role, offset=k)

    def mask(self) -> str:
        if ("mask",) not in self.leaves:
            self.leaves[("mask",)] = self.add("running", size=1, leaf=Leaf.MASK)
        return self.leaves[("mask",)]

    def equation(self, name: str, expr, last_hint: str) -> str:
        instrs = template(expr)
        if not instrs:  # `o[t] = x[t]`: a value of its own, so the output has a buffer
            src = self.values[self.leaf(expr)]
            a = ew.arg_symbols(1)
            return self.add(last_hint, size=src.size, batched=src.batched, op=EW, args=(src.id,),
                            fn=sp.Lambda(a, a[0]), var=name)
        ids: list[str] = []
        for j, ins in enumerate(instrs):
            args = tuple(ids[a[1]] if isinstance(a, tuple) else self.leaf(a) for a in ins.args)
            last = j == len(instrs) - 1
            node = ins.node
            key = (ins.op, args, node.fn, node.attrs)
            if not last and key in self.ops:   # `f[t] * h[t-1]` written twice is one value
                ids.append(self.ops[key])
                continue
            ids.append(self.add(last_hint if last else f"{name}_{j}", size=node.shape[0] if node.shape else 1,
                                batched=node.batched, op=ins.op, args=args, fn=node.fn, attrs=node.attrs,
                                var=name if last else None))
            self.ops.setdefault(key, ids[-1])
        return ids[-1]

    def state(self, s, expr) -> str:
        """A state's value: its equation's (a value of its own, full size, per
        sequence), or with lengths where(mask, new, s[t-1])."""
        masked = self.p.masked
        root = self.equation(s.name, expr, f"{s.name}_new" if masked else s.name)
        r = self.values[root]
        if not masked and r.op is EW and r.batched and r.size == s.shape[0]:
            return root
        a = ew.arg_symbols(3 if masked else 1)
        if masked:
            args = (self.mask(), root, self.leaf(Read(s.name, -s.direction)))
            fn = sp.Lambda(a, ew.where(a[0], a[1], a[2]))
        else:
            args, fn = (root,), sp.Lambda(a, a[0])
        self.values[root] = dataclasses.replace(r, var=None)
        return self.add(s.name, size=s.shape[0], batched=True, op=EW, args=args, fn=fn, var=s.name)

    def run(self) -> Program:
        if self.p.masked:   # the mask is read by the held states and the backward pass
            self.mask()
        for name, expr, _ in equations_with_loss(self.rec):
            s = self.rec.symbols.get(name)
            if s is not None and s.role is Role.STATE:
                self.outputs[name] = self.state(s, expr)
            else:
                self.outputs[name] = self.equation(name, expr, name)
        loss = self.outputs.pop(LOSS, None)
        states = [StateInfo(s.name, s.shape[0], s.direction, max(1, self.rec.max_delay(s.name)),
                            self.outputs[s.name], s.init) for s in self.rec.states]
        return dataclasses.replace(self.p, values=self.values, outputs=self.outputs, loss=loss, states=states)


def extract(p: Program) -> Program:
    return _Extract(p).run()
