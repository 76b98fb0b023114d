"""unfold: a graph compiler for recurrent networks.

    import unfold as uf
    rec = uf.load("examples/models/lstm.rnn").bind(H=64)
    params = rec.init_params(seed=0)
    dag = uf.unfold(rec, tau=5)                        # acyclic networkx DiGraph
    out = uf.evaluate(rec, params, inputs, targets)    # the reference interpreter
    loss, grads = uf.value_and_grad(rec, params, inputs, targets)
"""
from .api import evaluate
from .bptt import clip_grad_norm, grad_graph, jacobian_norms, value_and_grad
from .circuit import circuit
from .compiler import compile
from .dsl import load, parse
from .errors import InputError, ModelError, UnfoldError
from .ir import Recurrence, Role
from .unfolding import Kind, unfold

__version__ = "0.1.0"
