"""unfold: a graph compiler for recurrent networks.

    import unfold as uf
    rec = uf.load("examples/models/lstm.rnn").bind(H=64)
    params = rec.init_params(seed=0)
    dag = uf.unfold(rec, tau=5)                        # acyclic networkx DiGraph
    out = uf.evaluate(rec, params, inputs, targets)    # the reference interpreter
    loss, grads = uf.value_and_grad(rec, params, inputs, targets)
    fn = uf.compile(rec, target="cpu")                 # or "numpy", "cuda"
    params, history = uf.fit(fn, params, (inputs, targets), steps=1000, optimizer=uf.optim.Adam(1e-3))
    module = uf.to_torch(rec)                          # an nn.Module on the compiled kernels

This module is the facade: the package's layers (`lang`, `graph`,
`compiler`, `backends`, `viz`, `train`, `bridges`, `tools`;
docs/architecture.md) never import it.
"""
from . import seq2seq, seqloss, tree
from .bridges import distributed
from .bridges.jax import to_jax
from .bridges.torch import to_torch
from .bridges.weights import from_torch, to_torch_state_dict
from .compiler.driver import compile
from .graph.bptt import clip_grad_norm, grad_graph, jacobian_norms, value_and_grad
from .graph.circuit import circuit
from .graph.evaluate import evaluate
from .graph.unfolding import Kind, unfold
from .lang.dsl import load, parse
from .lang.errors import InputError, ModelError, UnfoldError
from .lang.ir import Role
from .lang.recurrence import Recurrence
from .lang.zoo import zoo_path
from .train import (Batch, Checkpoint, EarlyStopping, History, ctc_loss, ctc_value_and_grad, eval_loss, fit,
                    generate, load_model, load_params, one_hot, optim, pad_sequences, random_windows,
                    ridge_readout, save)

__version__ = "0.2.0"
__all__ = ["evaluate", "clip_grad_norm", "grad_graph", "jacobian_norms", "value_and_grad", "circuit",
           "compile", "load", "parse", "InputError", "ModelError", "UnfoldError", "Recurrence", "Role",
           "Kind", "unfold", "zoo_path", "draw", "distributed", "to_jax", "to_torch", "from_torch",
           "to_torch_state_dict", "Batch", "Checkpoint", "EarlyStopping", "History", "eval_loss", "fit",
           "generate", "load_model", "load_params", "one_hot", "optim", "pad_sequences", "random_windows",
           "ridge_readout", "save", "seq2seq", "seqloss", "tree", "ctc_loss", "ctc_value_and_grad"]


def draw(rec, view: str = "circuit", tau: int = 3, **options):
    """A graphviz picture of `rec` (see unfold.viz.draw)."""
    from .viz import draw as _draw
    return _draw(rec, view=view, tau=tau, **options)
