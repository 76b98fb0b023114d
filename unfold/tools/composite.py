"""The command line for models another front end than `uf.load` reads: an
encoder–decoder (`with encoder:` / `with decoder(...):` blocks, unfold.seq2seq),
a recurrence under a sequence loss (`loss = ctc(z[t], l)`, unfold.seqloss) and
a recursive (tree) network (`h[left(n)]`, unfold.tree).
`cli` sends such a file here (lang.zoo.model_kind tells them apart); `show`,
`check` and `draw` take them."""
from __future__ import annotations

import numpy as np

from ..lang.errors import UnfoldError
from ..lang.ir import Role
from ..lang.zoo import model_kind
from .. import viz
from ..seq2seq.model import EncoderDecoder
from ..seqloss.model import SequenceLossModel
from ..tree.model import TreeModel
from .gradcheck import gradcheck, random_run, table

#: the commands that take these models
COMMANDS = ("show", "check", "draw")


def load(path: str, command: str):
    """The model of `path` if another front end reads it, else None."""
    try:
        with open(path, "rb") as f:
            text = f.read(1 << 20).decode("utf-8", "replace")
    except OSError:
        return None   # uf.load reports it
    kind = model_kind(text)
    if kind == "recurrence":
        return None
    if command not in COMMANDS:
        what = {"encoder-decoder": "an encoder–decoder", "sequence-loss": "a CTC", "tree": "a tree"}[kind]
        raise UnfoldError(f"{path} is {what} model: "
                          f"`unfold {command}` takes one recurrence (expected one of: unfold {', '.join(COMMANDS)})")
    if kind == "encoder-decoder":
        from ..seq2seq import load as load_encoder_decoder
        return load_encoder_decoder(path)
    if kind == "tree":
        from ..tree import load as load_tree
        return load_tree(path)
    from ..seqloss import load as load_sequence_loss
    return load_sequence_loss(path)


def parts(model) -> list:
    """The recurrences a model is made of."""
    if isinstance(model, EncoderDecoder):
        return list(model.parts.values())
    return [model.cell if isinstance(model, TreeModel) else model.recurrence]


def random_problem(model, tau: int, batch: int, seed: int):
    """Params, inputs, targets and lengths (one full-length sequence, the others random)."""
    rng = np.random.default_rng(seed)
    if isinstance(model, TreeModel):   # `batch` random trees of 1 to tau leaves, a class per root
        from ..tree import random_tree
        trees = [random_tree(int(rng.integers(1, tau + 1)), rng) for _ in range(batch)]
        inputs = {s.name: [rng.normal(size=(t.n, *s.shape)) for t in trees]
                  for s in model.cell.of_role(Role.INPUT) if s.name not in model.children}
        classes = model.cell.symbols[model.logits].shape[0]
        return model.init_params(seed), inputs, rng.integers(0, classes, batch), trees
    if isinstance(model, SequenceLossModel):   # CTC: labels short enough to align
        params, inputs, _, _ = random_run(model.recurrence, tau, batch, seed)
        lengths = np.concatenate([[tau], rng.integers(max(1, tau // 2), tau + 1, batch - 1)])
        labels = [rng.integers(0, model.classes - 1, rng.integers(0, n // 2 + 1)) for n in lengths]
        labels = [np.where(s >= model.blank, s + 1, s) for s in labels]   # never the blank
        return params, inputs, {model.labels: labels}, lengths
    params = model.init_params(seed)
    _, inputs, _, _ = random_run(model.encoder, tau, batch, seed)
    _, dec_inputs, targets, _ = random_run(model.decoder, tau, batch, seed + 1)
    inputs.update({k: v for k, v in dec_inputs.items() if k not in model.linked_inputs()})
    lengths = {p: np.concatenate([[tau], rng.integers(1, tau + 1, batch - 1)]) for p in ("encoder", "decoder")}
    return params, inputs, targets, lengths


def compile_model(model, target: str, dtype=np.float64, **options):
    if isinstance(model, TreeModel):
        from ..tree import compile as compile_tree
        return _TreeRun(compile_tree(model, target, dtype=dtype, **options))
    if isinstance(model, EncoderDecoder):
        from ..seq2seq import compile as compile_ed
        return compile_ed(model, target, dtype, **options)
    from ..seqloss import compile as compile_sl
    return compile_sl(model, target, dtype, **options)


def check(model, target: str, tau: int, batch: int, seed: int, options: dict) -> bool:
    """Values and gradients of `target` against the step-program interpreter, and
    float64 finite differences of the whole model, in training mode (dropout's
    masks drawn from `seed`); prints the tables."""
    params, inputs, targets, lengths = random_problem(model, tau, batch, seed)
    shown = ({k: v.tolist() for k, v in lengths.items()} if isinstance(lengths, dict) else
             f"{len(lengths)} trees of {[t.n for t in lengths]} nodes" if isinstance(model, TreeModel) else
             lengths.tolist())
    print(f"gradient check of {model.name}: tau={tau} batch={batch} float64, lengths {shown}, target={target}")
    fn = compile_model(model, "numpy" if target == "reference" else target, np.float64, **options)
    ok = True
    if target not in ("reference", "numpy"):
        ok = _against_interpreter(fn, model, params, inputs, targets, lengths, seed)
    vg = lambda r, p, i, t, **kw: fn.value_and_grad(p, i, t, lengths=lengths, seed=seed)  # noqa: E731
    loss = lambda p, i, ini: fn.loss(p, i, targets, lengths=lengths, seed=seed)  # noqa: E731
    tensors = [(k, params, k) for k in sorted(params)]
    if not isinstance(model, TreeModel):   # a tree's inputs are a list of arrays: its params are probed
        tensors += [(k, inputs, k) for k in sorted(inputs)]
    rows = gradcheck(None, params, inputs, targets, value_and_grad=vg, loss_fn=loss, tensors=tensors)
    print(table(rows))
    return ok and all(r.ok for r in rows)


def _against_interpreter(fn, model, params, inputs, targets, lengths, seed) -> bool:
    ref = compile_model(model, "numpy")
    loss_c, grads_c = fn.value_and_grad(params, inputs, targets, lengths=lengths, seed=seed)
    loss_r, grads_r = ref.value_and_grad(params, inputs, targets, lengths=lengths, seed=seed)
    print(f"{'tensor':<14} {'compiled vs interpreter max rel diff':>38}  ok")
    ok = True
    for key in ["loss", *sorted(grads_r)]:
        a, b = (loss_c, loss_r) if key == "loss" else (grads_c[key], grads_r[key])
        err = float(np.max(np.abs(np.asarray(a) - b), initial=0.0) / max(np.max(np.abs(b), initial=0.0), 1e-12))
        ok &= err <= 1e-10
        print(f"{key:<14} {err:>38.2e}  {'yes' if err <= 1e-10 else 'NO'}")
    return ok


class _TreeRun:
    """A compiled tree network called as the others are: `lengths` are the trees."""

    def __init__(self, tf):
        self.tf = tf

    def value_and_grad(self, params, inputs, targets, lengths, seed=None):
        return self.tf.value_and_grad(params, lengths, inputs, targets, seed=seed)

    def loss(self, params, inputs, targets, lengths, seed=None):
        return self.tf.loss(params, lengths, inputs, targets, seed=seed)


def describe_inputs(model) -> str:
    """What a call takes, for `unfold show`."""
    if isinstance(model, TreeModel):
        given = [s.name for s in model.cell.of_role(Role.INPUT) if s.name not in model.children]
        return (f"call: trees (uf.tree.Tree each); inputs {', '.join(given) or 'none'}, one [nodes, ...] "
                f"array per tree; labels: a class per tree (its root) or per node (-1: none)")
    if not isinstance(model, EncoderDecoder):
        given = ", ".join(s.name for s in model.recurrence.of_role(Role.INPUT)) or "none"
        return (f"call: inputs {given}; targets {{'{model.labels}': one label sequence per sequence}} "
                f"(or (padded [B, S], lengths [B]))")
    out = []
    for name, rec in model.parts.items():
        given = [s.name for s in rec.of_role(Role.INPUT) if s.name not in model.linked_inputs()]
        out.append(f"{name}: inputs {', '.join(given) or 'none'}; targets "
                   f"{', '.join(s.name for s in rec.of_role(Role.TARGET)) or 'none'}")
    return "call: " + "; ".join(out)


def draw(model, view: str, tau: int, force: bool):
    if isinstance(model, TreeModel):   # one tree of `tau` leaves, unfolded
        if view != "unfolded":
            return viz.draw(model.cell, view=view, tau=1, force=force,
                            title=f"{model.name}: the cell at one node n (children's states as inputs)")
        from ..tree import draw_tree, random_tree
        return draw_tree(random_tree(max(2, tau), np.random.default_rng(0)), cell=model)
    if isinstance(model, EncoderDecoder):
        from ..seq2seq.draw import draw as draw_ed
        return draw_ed(model, view=view, tau=tau, force=force)
    from ..seqloss.draw import draw as draw_sl
    return draw_sl(model, view=view, tau=tau, force=force)
