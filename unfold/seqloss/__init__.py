"""Recurrences trained by a loss over the whole output sequence: CTC (`loss = ctc(z[t], l)`).

    m = uf.seqloss.load(path)            # a .rnn file with `l = labels(C)` and `loss = ctc(z[t], l)`
    fn = uf.seqloss.compile(m, "cpu")    # the recurrence's kernels, CTC over its logits
"""
from .compiled import CompiledSequenceLoss, compile
from .model import SequenceLossModel, load, parse_sequence_loss

__all__ = ["CompiledSequenceLoss", "SequenceLossModel", "compile", "load",
           "parse_sequence_loss"]
