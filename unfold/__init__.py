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
__all__ = ["evaluate", "clip_grad_norm", "grad_graph", "jacobian_norms", "value_and_grad", "circuit",
           "compile", "load", "parse", "InputError", "ModelError", "UnfoldError", "Recurrence", "Role",
           "Kind", "unfold", "zoo_path", "draw"]


def zoo_path(name: str):
    """The path of a built-in model: zoo_path("lstm") -> .../unfold/zoo/lstm.rnn."""
    from pathlib import Path
    path = Path(__file__).parent / "zoo" / f"{name}.rnn"
    if not path.exists():
        names = sorted(p.stem for p in path.parent.glob("*.rnn"))
        raise ModelError(f"no built-in model {name!r}; the zoo has: {', '.join(names)}")
    return path


def draw(rec, view: str = "circuit", tau: int = 3, **options):
    """A graphviz picture of `rec` (see unfold.viz.draw)."""
    from .viz import draw as _draw
    return _draw(rec, view=view, tau=tau, **options)
