"""A CTC model compiled: the recurrence's kernels, the CTC loss over its logits.

    m = uf.seqloss.load("examples/models/ctc.rnn")
    fn = uf.seqloss.compile(m, target="cpu")
    loss, grads = fn.value_and_grad(params, {"x": x}, {"l": [[1, 2, 2], [3]]}, lengths=lengths)

The labels of each sequence are given under the labels' name, as a list of
B integer sequences (lengths may differ) or as `(padded [B, S], lengths [B])`.
The backward pass is the CTC gradient with respect to the logits, carried
through the recurrence by its compiled BPTT (`fn.vjp`); unfold/train/ctc.py
documents the loss (torch.nn.CTCLoss's semantics).
"""
from __future__ import annotations

import numpy as np

from ..compiler.driver import compile as compile_recurrence
from ..graph.runargs import to_host
from ..lang.errors import InputError
from ..train.ctc import ctc_loss, ctc_value_and_grad
from .model import SequenceLossModel


class CompiledSequenceLoss:
    def __init__(self, model: SequenceLossModel, target: str = "cpu", dtype=np.float64, **options):
        self.model = model
        self.fn = compile_recurrence(model.recurrence, target=target, dtype=dtype, **options)

    @property
    def dropout(self) -> bool:
        return self.fn.dropout

    def __call__(self, params, inputs=None, targets=None, init=None, lengths=None, seed=None) -> dict:
        """The recurrence's outputs, and the `loss` when the labels are given
        (seed: training mode, as for `uf.compile`'s functions)."""
        out = to_host(self.fn(params, inputs, init=init, lengths=lengths, seed=seed))
        if targets:
            out["loss"] = self._ctc(out, targets, lengths)[0]
        return out

    def loss(self, params, inputs, targets, init=None, lengths=None, seed=None) -> float:
        out = to_host(self.fn(params, inputs, init=init, lengths=lengths, seed=seed))
        return self._ctc(out, targets, lengths)[0]

    def value_and_grad(self, params, inputs, targets, init=None, lengths=None, wrt="all", truncate=None,
                       seed=None):
        """The CTC loss and its gradients (`wrt`: "all" — params, inputs and `init:<state>`s —,
        "params", or names)."""
        m = self.model
        labels, label_lengths = self._labels(targets)
        return ctc_value_and_grad(self.fn, params, inputs, labels, label_lengths, output=m.output,
                                  lengths=lengths, init=init, blank=m.blank, reduction=m.reduction,
                                  zero_infinity=m.zero_infinity, wrt=wrt, truncate=truncate, seed=seed)

    def _ctc(self, out: dict, targets, lengths):
        m = self.model
        labels, label_lengths = self._labels(targets)
        return ctc_loss(np.asarray(out[m.output]), labels, lengths, label_lengths, blank=m.blank,
                        reduction=m.reduction, zero_infinity=m.zero_infinity)

    def _labels(self, targets) -> tuple[np.ndarray, np.ndarray | None]:
        name = self.model.labels
        if not isinstance(targets, dict) or name not in targets:
            raise InputError(f"the labels `{name}` are missing: pass targets={{'{name}': [[1, 2], [3], ...]}} "
                             "(one label sequence per sequence) or (padded [B, S], lengths [B])")
        given = targets[name]
        if isinstance(given, tuple) and len(given) == 2:
            return np.asarray(given[0]), np.asarray(given[1])
        if isinstance(given, np.ndarray):
            return given, None
        try:
            seqs = [np.asarray(s).reshape(-1) for s in given]
        except (TypeError, ValueError):
            seqs = None
        if seqs is None or any(a.size and a.dtype.kind not in "iu" for a in seqs):
            raise InputError(f"labels `{name}`: expected a list of integer sequences, one per sequence, "
                             f"or (padded [B, S], lengths [B])")
        padded = np.zeros((len(seqs), max((len(s) for s in seqs), default=0)), dtype=np.int64)
        for b, s in enumerate(seqs):
            padded[b, :len(s)] = s   # an empty one: all blanks
        return padded, np.array([len(s) for s in seqs], dtype=np.int64)


def compile(model: SequenceLossModel, target: str = "cpu", dtype=np.float64, **options) -> CompiledSequenceLoss:
    """The recurrence compiled for `target` (options as for `uf.compile`), CTC over its logits."""
    return CompiledSequenceLoss(model, target, dtype, **options)
