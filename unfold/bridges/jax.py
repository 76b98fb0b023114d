"""An unfold recurrence as a JAX function.

    f = to_jax(rec)                                  # f(params, x) -> h [T, B, H] (one state), else a dict
    loss = lambda p, x: jnp.mean(f(p, x) ** 2)
    jax.jit(jax.grad(loss))(params, x)               # the compiled BPTT computes the gradient

`f` is a `jax.custom_vjp`: its forward pass is a `jax.pure_callback` into the
compiled kernels on the host, its backward pass another into the backward
kernels, so it works under `jit`, `grad`, `vjp` and `value_and_grad`.  The
forward pass of a gradient keeps its values (`fn.forward_vjp`) under a token
its residuals carry, so the backward pass runs only the backward kernels; a
token no longer held (the last few are) or values overwritten meanwhile make
it run the forward pass again (`fn.vjp`).  Under `vmap` the callbacks run
once per mapped element, one after another (`vmap_method="sequential"`):
correct for any `in_axes`, params included, but no faster than a loop; for
speed put the examples in the batch axis B.  Double differentiation (a
Hessian) is not available: the backward pass is a callback, not JAX code.
Dropout is on when `f` is given a PRNG key (`f(params, x, key=key)`,
training mode: the masks are drawn from it, the same in the forward and the
backward pass) and off without one.
"""
from __future__ import annotations

import collections
import functools
import threading

import numpy as np

from ..compiler.driver import compile
from ..lang.errors import UnfoldError
from ..lang.ir import Role
from ..lang.recurrence import Recurrence
from .common import check_params, output_names
from ..lang.extras import require


#: pullbacks kept for backward passes to come: a gradient's forward and backward run one after the
#: other, and each held pullback holds its forward's arrays
KEPT = 4


def to_jax(rec: Recurrence, target: str = "cpu", outputs=None, **compile_options):
    """`f(params, inputs, init=None, lengths=None, key=None)`: the outputs of
    `rec` (by default its states: one state's [T, B, H] array, or a dict by
    name; see `outputs` in uf.to_torch).  inputs: an array (a model with one
    input) or a dict name -> [T, B, ...] (targets that equations read go here
    too); init: state name -> [B, n]; lengths: one per sequence; key: a
    `jax.random` key, for training mode (dropout's masks drawn from it).  The
    dtype (float32, or float64 under jax_enable_x64) is the params'; each is
    compiled on first use."""
    jax = require("jax", "jax", "uf.to_jax")
    if not isinstance(rec, Recurrence):
        raise UnfoldError(f"uf.to_jax takes a recurrence (uf.load, uf.parse), not {type(rec).__name__}")
    bridge = _Host(jax, rec, target, output_names(rec, outputs), compile_options)
    core = jax.custom_vjp(bridge.primal)
    core.defvjp(bridge.primal_and_residuals, bridge.backward)

    def f(params, inputs, init=None, lengths=None, key=None):
        if not isinstance(params, dict):
            raise UnfoldError(f"params must be a dict name -> array, not {type(params).__name__}")
        arrays = bridge.named_inputs(inputs)
        lengths = None if lengths is None else jax.numpy.asarray(lengths, dtype=jax.numpy.int32)
        seed = None if key is None else jax.random.randint(key, (), 0, 2 ** 31 - 1, dtype=jax.numpy.int32)
        out = core(dict(params), arrays, dict(init or {}), lengths, seed)
        return out[0] if bridge.single else dict(zip(bridge.names, out))

    f.__doc__ = f"`{rec.name}` on unfold's compiled kernels (uf.to_jax)."
    return f


class _Host:
    """The compiled function and the two callbacks into it."""

    def __init__(self, jax, rec: Recurrence, target: str, outputs: tuple, options: dict):
        self.jax = jax
        self.rec, self.target, self.options = rec, target, options
        self.names, self.single = outputs
        self._compiled = {}
        self._pullbacks: collections.OrderedDict = collections.OrderedDict()   # token -> a forward's pullback
        self._next, self._lock = 0, threading.Lock()
        self.fn(np.float32)   # a bad target or option fails here, not inside a trace

    def fn(self, dtype):
        dtype = np.dtype(dtype)
        if dtype not in self._compiled:
            self._compiled[dtype] = compile(self.rec, target=self.target, dtype=dtype, **self.options)
        return self._compiled[dtype]

    def named_inputs(self, inputs) -> dict:
        if isinstance(inputs, dict):
            return dict(inputs)
        names = [s.name for s in self.rec.of_role(Role.INPUT)]
        if len(names) != 1:
            raise UnfoldError(f"`{self.rec.name}` has inputs {', '.join(names) or '(none)'}: pass a dict "
                              "name -> array")
        return {names[0]: inputs}

    # -- traced: shapes only ---------------------------------------------------
    def dtype(self, params: dict):
        dtypes = {np.dtype(a.dtype) for a in params.values()}
        if len(dtypes) != 1 or not dtypes <= {np.dtype(np.float32), np.dtype(np.float64)}:
            raise UnfoldError(f"the params of `{self.rec.name}` must all be float32 or all float64, not "
                              f"{', '.join(sorted(map(str, dtypes))) or '(none)'}")
        return dtypes.pop()

    def output_shapes(self, params: dict, inputs: dict) -> tuple:
        """The outputs' shapes, after the checks that can be made on shapes alone
        (an error inside a callback would reach the user wrapped in XLA's)."""
        check_params(self.rec, {k: np.shape(a) for k, a in params.items()})
        timed = [a.shape[:2] for k, a in inputs.items() if k in self.rec.symbols and self.rec.symbols[k].timed]
        if not timed:
            raise UnfoldError(f"uf.to_jax: `{self.rec.name}` needs a sequence input [T, B, ...] to know T and B")
        dtype = self.dtype(params)
        return tuple(self.jax.ShapeDtypeStruct(timed[0] + (tuple(self.rec.symbols[k].shape) or (1,)), dtype)
                     for k in self.names)

    def primal(self, params, inputs, init, lengths, seed):
        forward = functools.partial(self.forward, self.dtype(params))   # the dtype as traced
        return self.jax.pure_callback(forward, self.output_shapes(params, inputs), params, inputs, init,
                                      lengths, seed, vmap_method="sequential")

    def primal_and_residuals(self, params, inputs, init, lengths, seed):
        forward = functools.partial(self.forward_kept, self.dtype(params))
        shapes = self.output_shapes(params, inputs) + (self.jax.ShapeDtypeStruct((), np.int32),)
        *out, token = self.jax.pure_callback(forward, shapes, params, inputs, init, lengths, seed,
                                             vmap_method="sequential")
        return tuple(out), (params, inputs, init, lengths, seed, token)

    def backward(self, residuals, cotangents):
        params, inputs, init, lengths, seed, token = residuals
        shapes = self.jax.tree.map(lambda a: self.jax.ShapeDtypeStruct(a.shape, a.dtype), (params, inputs, init))
        gradients = functools.partial(self.gradients, self.dtype(params))
        grads = self.jax.pure_callback(gradients, shapes, params, inputs, init, lengths, seed, token,
                                       tuple(cotangents), vmap_method="sequential")
        # lengths and the seed are integers: their cotangents are float0 zeros (None when there are none)
        none = [None if a is None else np.zeros(a.shape, self.jax.dtypes.float0) for a in (lengths, seed)]
        return (*grads, *none)

    # -- on the host: numpy arrays -----------------------------------------------
    def arguments(self, dtype, params, inputs, init, lengths, seed) -> dict:
        if self.dtype(params) != dtype:
            raise UnfoldError(f"the params reached unfold's kernels as {self.dtype(params)}, traced as {dtype}: "
                              "jax.enable_x64 as a context manager holds only in its own thread, and JAX may "
                              "run callbacks in another; use jax.config.update('jax_enable_x64', True)")
        host = lambda tree: {k: np.ascontiguousarray(v, dtype=dtype) for k, v in tree.items()}  # noqa: E731
        inputs = host(inputs)
        targets = {k: inputs.pop(k) for k in list(inputs)
                   if k in self.rec.symbols and self.rec.symbols[k].role is Role.TARGET}
        return {"params": host(params), "inputs": inputs, "targets": targets, "init": host(init),
                "lengths": None if lengths is None else np.asarray(lengths, dtype=np.int64),
                "seed": None if seed is None else int(seed)}

    def forward(self, dtype, params, inputs, init, lengths, seed):
        args = self.arguments(dtype, params, inputs, init, lengths, seed)
        out = self.fn(dtype)(**args)
        return tuple(np.ascontiguousarray(out[k]) for k in self.names)

    def forward_kept(self, dtype, params, inputs, init, lengths, seed):
        """The forward pass of a gradient: its outputs, and the token of its pullback."""
        args = self.arguments(dtype, params, inputs, init, lengths, seed)
        # copies: the pullback reads them after this callback, and JAX may reuse the buffers it lent it
        args = {k: {n: np.array(a) for n, a in v.items()} if isinstance(v, dict) else v for k, v in args.items()}
        out, pullback = self.fn(dtype).forward_vjp(outputs=self.names, wrt=self.wrt(args), **args)
        with self._lock:
            token = self._next = (self._next + 1) % 2 ** 31
            self._pullbacks[token] = pullback
            while len(self._pullbacks) > KEPT:
                self._pullbacks.popitem(last=False)
        return (*(np.ascontiguousarray(out[k]) for k in self.names), np.int32(token))

    def wrt(self, args: dict) -> list[str]:
        """Every param, input and initial state given: JAX asks for the cotangents of all."""
        return [s.name for s in self.rec.of_role(Role.PARAM) if s.name in args["params"]] + \
            list(args["inputs"]) + [f"init:{k}" for k in args["init"]]

    def gradients(self, dtype, params, inputs, init, lengths, seed, token, cotangents):
        args = self.arguments(dtype, params, inputs, init, lengths, seed)
        fn = self.fn(dtype)
        cots = {k: np.ascontiguousarray(c, dtype=dtype) for k, c in zip(self.names, cotangents)}
        wrt = self.wrt(args)
        with self._lock:   # taken: its arrays freed once used (a second backward runs the forward again)
            pullback = self._pullbacks.pop(int(token), None)
        grads = {} if not wrt else pullback(cots) if pullback else fn.vjp(cotangents=cots, wrt=wrt, **args)
        zero = lambda k, a: np.zeros(np.shape(a), dtype)   # noqa: E731 (consts and targets: none)
        return ({k: grads.get(k, zero(k, a)) for k, a in params.items()},
                {k: grads.get(k, zero(k, a)) for k, a in inputs.items()},
                {k: grads.get(f"init:{k}", zero(k, a)) for k, a in init.items()})
