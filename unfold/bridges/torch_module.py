"""The PyTorch module and autograd function behind `uf.to_torch` (imports torch).

Forward: the module's tensors become C-contiguous numpy arrays of the
compiled dtype and the compiled function runs; its sequences come back as
tensors.  When a gradient will be asked for, the forward pass keeps its
values (`fn.forward_vjp`).  Backward: PyTorch's cotangents of those
sequences go to that pullback (or to `fn.vjp`, which runs the forward pass
again, if the values were overwritten by another call meanwhile), which runs
the compiled BPTT and returns the gradients of exactly the params, inputs
and initial states that need one.  Every state is seeded (zeros when
PyTorch has none for it), so one call pattern is one compiled variant.
In training mode (`module.train()`, PyTorch's default) a model with dropout
draws a seed for its masks from PyTorch's generator at each call (so
`torch.manual_seed` makes them reproducible); the backward pass reuses it.
In evaluation mode (`module.eval()`) no unit is dropped.
"""
from __future__ import annotations

import numpy as np
import torch

from ..compiler.driver import compile
from ..lang.errors import UnfoldError
from ..lang.ir import Role

_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}


class UnfoldModule(torch.nn.Module):
    """`rec` as a module (made by `uf.to_torch`): params in `self.params` (an
    nn.ParameterDict), consts as buffers `const_<name>`."""

    def __init__(self, rec, params: dict, dtype, target: str, outputs: list, single: bool, options: dict):
        super().__init__()
        self.rec, self.target, self.outputs, self.single = rec, target, outputs, single
        self.options = dict(options)
        #: what a call computes: the outputs asked for, then the other states (their final values)
        self.computed = outputs + [s.name for s in rec.states if s.name not in outputs]
        self.params = torch.nn.ParameterDict()
        for s in rec.params:
            value = torch.from_numpy(params[s.name].copy())
            if s.role is Role.PARAM:
                self.params[s.name] = torch.nn.Parameter(value)
            else:   # a const gets no gradient: a buffer, moved and cast with the module
                self.register_buffer(f"const_{s.name}", value)
        self._fallback_dtype = np.dtype(dtype)   # for a model without params (else theirs decides)
        self._compiled = {}
        self.compiled(self._fallback_dtype)   # a bad target or option fails here, not at the first call

    def extra_repr(self) -> str:
        return f"rec={self.rec.name!r}, target={self.target!r}, outputs={self.outputs}"

    def __getstate__(self):   # compiled functions do not pickle; they are rebuilt (from the disk cache)
        return {**self.__dict__, "_compiled": {}}

    def compiled(self, dtype):
        """The compiled function for `dtype`, compiled on first use (module.double() -> float64)."""
        dtype = np.dtype(dtype)
        if dtype not in self._compiled:
            self._compiled[dtype] = compile(self.rec, target=self.target, dtype=dtype, **self.options)
        return self._compiled[dtype]

    def tensors(self) -> dict:
        """Every param and const of the model, by name."""
        consts = {s.name: getattr(self, f"const_{s.name}") for s in self.rec.of_role(Role.CONST)}
        return {**dict(self.params.items()), **consts}

    def dtype(self, tensors: dict):
        dtypes = {t.dtype for t in tensors.values()}
        if len(dtypes) > 1 or not dtypes <= set(_NUMPY):
            raise UnfoldError(f"the params of `{self.rec.name}` must all be float32 or all float64, not "
                              f"{', '.join(sorted(map(str, dtypes)))}")
        return _NUMPY[dtypes.pop()] if dtypes else self._fallback_dtype

    def forward(self, inputs=None, init=None, lengths=None, tau=None, batch=None, return_state=False, seed=None):
        """inputs: a [T, B, D] tensor (a model with one input) or a dict name ->
        tensor (targets that equations read go here too); init: state name ->
        [B, n]; lengths: one per sequence.  Returns the outputs (see to_torch);
        with return_state, also each state's final value (PyTorch's h_n, c_n).
        seed: dropout's masks in training mode (default: drawn from PyTorch's
        generator); ignored in evaluation mode."""
        params = self.tensors()
        call = _Call(self, params, self.named_inputs(inputs), dict(init or {}), lengths, tau, batch)
        if self.training and call.fn.dropout:
            call.options["seed"] = int(torch.randint(0, 2 ** 62, ()).item()) if seed is None else seed
        seqs = dict(zip(self.computed, _Run.apply(call, *call.tensors)))
        out = seqs[self.outputs[0]] if self.single else {k: seqs[k] for k in self.outputs}
        return (out, call.final_states(seqs)) if return_state else out

    def named_inputs(self, inputs) -> dict:
        if inputs is None or isinstance(inputs, dict):
            return dict(inputs or {})
        names = [s.name for s in self.rec.of_role(Role.INPUT)]
        if len(names) != 1:
            raise UnfoldError(f"`{self.rec.name}` has inputs {', '.join(names) or '(none)'}: pass a dict "
                              "name -> tensor")
        return {names[0]: inputs}


class _Call:
    """One call of the module: its tensors in a fixed order (params, inputs,
    initial states), what each is called by the compiled function, and the
    conversions both ways."""

    def __init__(self, module: UnfoldModule, params: dict, inputs: dict, init: dict, lengths, tau, batch):
        self.module, self.dtype = module, module.dtype(params)
        self.fn = module.compiled(self.dtype)
        inputs = {k: torch.as_tensor(v) for k, v in inputs.items()}
        init = {k: torch.as_tensor(v) for k, v in init.items()}
        #: the compiled function's name for each tensor: a param, an input or target, `init:<state>`
        self.keys = list(params) + list(inputs) + [f"init:{k}" for k in init]
        self.tensors = list(params.values()) + list(inputs.values()) + list(init.values())
        self.lengths = None if lengths is None else np.asarray(torch.as_tensor(lengths).cpu(), dtype=np.int64)
        self.options = {"tau": tau, "batch": batch}   # to every call; and a `seed` in training mode
        self.device = (list(inputs.values()) + self.tensors + [torch.empty(0)])[0].device
        self.pullback = None   # the forward pass's, kept for the backward pass
        self.recording = torch.is_grad_enabled()   # read here: a Function's forward runs with grad mode off

    def arrays(self, tensors) -> dict:
        """The compiled function's arguments, from the tensors (as saved for backward)."""
        rec, tree = self.module.rec, {"params": {}, "inputs": {}, "targets": {}, "init": {}}
        for key, t in zip(self.keys, tensors):
            a = np.ascontiguousarray(t.detach().to("cpu").numpy(), dtype=self.dtype)
            if key.startswith("init:"):
                tree["init"][key[5:]] = a
            elif key not in rec.symbols:
                raise UnfoldError(f"unknown input `{key}` of `{rec.name}`; its inputs: "
                                  + ", ".join(s.name for s in rec.of_role(Role.INPUT, Role.TARGET)))
            else:
                role = {Role.PARAM: "params", Role.CONST: "params", Role.TARGET: "targets"}
                tree[role.get(rec.symbols[key].role, "inputs")][key] = a
        return tree

    def run(self, tensors, needed) -> list:
        """The forward pass; its values kept for the backward pass if `needed` asks for a gradient."""
        wrt = self.wanted(needed)
        if wrt and self.recording:
            out, self.pullback = self.fn.forward_vjp(**self.arrays(tensors), outputs=self.module.computed,
                                                     lengths=self.lengths, wrt=wrt, **self.options)
        else:
            out = self.fn(**self.arrays(tensors), lengths=self.lengths, **self.options)
        return [self.tensor(out[k]) for k in self.module.computed]

    def wanted(self, needed) -> list[str]:
        return [k for k, need in zip(self.keys, needed) if need and self.differentiable(k)]

    def gradients(self, tensors, cotangents, needed) -> list:
        """The gradient of each tensor that needs one (None for the others)."""
        wrt = self.wanted(needed)
        if not wrt:
            return [None] * len(self.keys)
        cots = {k: np.ascontiguousarray(c.detach().to("cpu").numpy(), dtype=self.dtype)
                for k, c in zip(self.module.computed, cotangents)}
        if self.pullback is not None:
            grads = self.pullback(cots)
        else:
            grads = self.fn.vjp(**self.arrays(tensors), cotangents=cots, lengths=self.lengths, wrt=wrt,
                                **self.options)
        return [self.tensor(grads[k], like=t) if k in grads else None for k, t in zip(self.keys, tensors)]

    def differentiable(self, key: str) -> bool:
        """Params, inputs and initial states have gradients; targets and consts none."""
        return key.startswith("init:") or self.module.rec.symbols[key].role in (Role.PARAM, Role.INPUT)

    def tensor(self, a, like=None):
        t = torch.from_numpy(np.ascontiguousarray(a))
        return t.to(device=like.device, dtype=like.dtype) if like is not None else t.to(self.device)

    def final_states(self, seqs: dict) -> dict:
        """Each state's value after its last step, indexed out of its sequence
        (so gradients reach it): t = T (each sequence's length), t = 1 backward."""
        out = {}
        for s in self.module.rec.states:
            seq = seqs[s.name]
            T, B = seq.shape[0], seq.shape[1]
            last = torch.full((B,), T - 1) if self.lengths is None else torch.as_tensor(self.lengths - 1)
            out[s.name] = seq[last if s.direction > 0 else torch.zeros(B, dtype=torch.long), torch.arange(B)]
        return out


class _Run(torch.autograd.Function):
    """The compiled forward pass, and the compiled BPTT as its backward."""

    @staticmethod
    def forward(ctx, call: _Call, *tensors):
        ctx.call = call
        outputs = tuple(call.run(tensors, ctx.needs_input_grad[1:]))
        # saved, PyTorch notices an in-place change before backward: of an argument, or of an
        # output (the pullback reads the forward's values from the outputs' memory)
        ctx.save_for_backward(*tensors, *outputs)
        return outputs

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *cotangents):
        saved = ctx.saved_tensors[:len(ctx.call.keys)]
        return (None, *ctx.call.gradients(saved, cotangents, ctx.needs_input_grad[1:]))
