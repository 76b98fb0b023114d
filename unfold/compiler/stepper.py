"""One step at a time, for generation: the compiled forward pass with T = 1.

    step = fn.stepper(params, batch=1)        # weights packed and buffers made once
    state = step.initial()                    # each state's initial value
    out, state = step({"x": x_t}, state)      # out["h"]: [B, H]; state: the next call's

Each call writes x_t and the state into the buffers of a one-step run, calls
the forward kernel and reads the new values out: no checks beyond the
arrays' shapes, no allocation but the returned values, so a step of a small
cell costs a few microseconds.  A state read k > 1 steps back carries its
last k values, oldest first ([k, B, n]).  A step runs in evaluation mode
(dropout off).  A model whose inputs are read late
(`x[t-1]`), that reads the step index `t` or that has backward states
cannot be stepped.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..graph.runargs import RunArgs
from ..lang.errors import InputError, ModelError
from ..lang.ir import Call, Role, walk
from . import layout, noise, tied
from .program import Layout, Leaf
from .threads import BlasThreads


class Stepper:
    def __init__(self, fn, params, batch: int = 1):
        rec = fn.rec
        late = sorted({v.name for v in fn.program().values.values() if v.leaf is Leaf.INPUT and v.offset})
        reads_t = any(isinstance(n, Call) and n.op.name == "t" for eq in rec.equations for n in walk(eq.expr))
        if late or reads_t or any(s.direction < 0 for s in rec.states):
            why = (f"it reads {', '.join(late)} late" if late else
                   "it reads the step index `t`, which a one-step run would read as 0" if reads_t else
                   "it has a backward state")
            raise ModelError(f"`{rec.name}` cannot be run one step at a time: {why}",
                             expected="inputs read at [t], forward states only, no `t` as a value")
        zeros = {s.name: np.zeros(((1,) if s.timed else ()) + (batch,) + s.shape, fn.dtype)
                 for s in rec.of_role(Role.INPUT, Role.TARGET)}
        self.run = RunArgs.check(rec, params, {k: v for k, v in zeros.items() if rec.symbols[k].role is Role.INPUT},
                                 {k: v for k, v in zeros.items() if rec.symbols[k].role is Role.TARGET},
                                 tau=1, batch=batch, strict=True, dtype=fn.dtype)
        # W.T @ v: the derived transposes (compiler/tied.py); dropout's masks: ones, a step is evaluation
        self.run = dataclasses.replace(self.run, params=tied.expand(self.run.params, fn.ties),
                                       inputs=noise.inputs(self.run, fn.masks, {}))
        self.fn, self.program = fn, fn.program()
        self.bufs = layout.prepare(self.program, self.run, {})   # buffers of its own, not the workspace's
        kernels = fn.kernels(self.program, 1)
        bind = getattr(kernels, "bind", None)   # a target may bind the buffers once
        self.forward = bind("forward", 1, batch, 0, self.bufs) if bind else \
            (lambda: kernels.forward(1, batch, 0, self.bufs, False))
        p = self.program
        self.inputs = {b.symbol: (self.bufs[b.name], b.layout is Layout.INPUT) for b in p.buffers
                       if b.layout in (Layout.INPUT, Layout.STATIC_INPUT) and b.symbol in rec.symbols
                       and rec.symbols[b.symbol].role is Role.INPUT}
        self.states = [(s.name, s.depth, self.bufs[p.places[s.value].buffer.name]) for s in p.states]
        self.outputs = layout.outputs(p, self.bufs, 1, batch)      # views: [1, B, n] each

    def initial(self) -> dict[str, np.ndarray]:
        """Each state's initial value (its history, for a state read k > 1 steps back)."""
        return {name: np.array(S[:depth] if depth > 1 else S[depth - 1]) for name, depth, S in self.states}

    def __call__(self, inputs: dict, state: dict | None = None):
        """(outputs, next state): every state and intermediate at this step, [B, n]."""
        for name, (buf, timed) in self.inputs.items():
            x = inputs.get(name) if isinstance(inputs, dict) else None
            want = buf.shape[1:] if timed else buf.shape
            if x is None or np.shape(x) != want:
                raise InputError(f"input `{name}` of a step must have shape {list(want)}, "
                                 f"not {list(np.shape(x)) if x is not None else 'missing'}")
            buf[0 if timed else ...] = x
        state = self.initial() if state is None else state
        for name, depth, S in self.states:
            S[:depth] = state[name] if depth > 1 else state[name][None]
        with BlasThreads(self.fn.threads):
            self.forward()
        out = {k: v[0].copy() for k, v in self.outputs.items()}
        new = {name: (np.concatenate([S[1:depth], S[depth:depth + 1]]) if depth > 1 else S[depth].copy())
               for name, depth, S in self.states}
        return out, new
