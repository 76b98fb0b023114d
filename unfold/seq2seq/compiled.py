"""An encoder–decoder compiled: two compiled recurrences and the context between them.

    ed = uf.seq2seq.load("examples/models/encoder_decoder.rnn")
    fn = uf.seq2seq.compile(ed, target="cpu")
    loss, grads = fn.value_and_grad(params, {"x": x}, {"y": y},
                                    lengths={"encoder": lx, "decoder": ly})

x is [S, B, D] and y [T, B, K]: the two sequences have their own lengths.
Forward: the encoder runs over x; each linked encoder state's final value
(step lengths[b] - 1 of sequence b) becomes the decoder's initial state or
per-sequence input; the decoder runs and gives the loss.  Backward: the
decoder's BPTT gives the gradient of the loss with respect to the context
(its `init:<state>` and linked-input gradients); that gradient, placed at
each sequence's last encoder step, is the cotangent of the encoder's states,
and the encoder's BPTT carries it back through the encoder, on the values
its forward pass stored (`fn.forward_vjp`).
A `seed` (training mode: dropout) gives each part a seed of its own, drawn
from it.
"""
from __future__ import annotations

import numpy as np

from ..compiler.driver import compile as compile_part
from ..lang.errors import InputError
from ..lang.ops.dropout import spawn
from ..lang.ir import Role
from .model import PARTS, EncoderDecoder


class CompiledEncoderDecoder:
    def __init__(self, ed: EncoderDecoder, target: str = "cpu", dtype=np.float64, **options):
        self.ed, self.target = ed, target
        self.encoder = compile_part(ed.encoder, target=target, dtype=dtype, **options)
        self.decoder = compile_part(ed.decoder, target=target, dtype=dtype, **options)

    @property
    def dropout(self) -> bool:
        return self.encoder.dropout or self.decoder.dropout

    def __call__(self, params, inputs, targets=None, lengths=None, seed=None) -> dict:
        """{"encoder": its states and intermediates, "decoder": its, and "loss" when targets are given}."""
        (pe, xe, le), (pd, xd, ld) = self._split(params, inputs, lengths)
        se, sd = spawn(seed, 2)
        enc = self.encoder(pe, xe, lengths=le, seed=se)
        xd, init = self._context(enc, xd, le)
        dec = self.decoder(pd, xd, targets, init=init, lengths=ld, seed=sd)
        out = {"encoder": enc, "decoder": dec}
        if "loss" in dec:
            out["loss"] = dec.pop("loss")
        return out

    def loss(self, params, inputs, targets, lengths=None, seed=None) -> float:
        (pe, xe, le), (pd, xd, ld) = self._split(params, inputs, lengths)
        se, sd = spawn(seed, 2)
        xd, init = self._context(self.encoder(pe, xe, lengths=le, seed=se), xd, le)
        return self.decoder.loss(pd, xd, targets, init=init, lengths=ld, seed=sd)

    def value_and_grad(self, params, inputs, targets, lengths=None, seed=None):
        """The loss and its gradient for every param (a shared one: both parts' terms
        summed), every input of either part, and the encoder's `init:<state>`s and the
        decoder's unlinked ones."""
        (pe, xe, le), (pd, xd, ld) = self._split(params, inputs, lengths)
        se, sd = spawn(seed, 2)
        linked = sorted(set(self.ed.links.values()))
        enc, pullback = self.encoder.forward_vjp(pe, xe, linked, lengths=le, seed=se)
        xd, init = self._context(enc, xd, le)
        loss, gd = self.decoder.value_and_grad(pd, xd, targets, init=init, lengths=ld, seed=sd)
        ge = pullback(self._cotangents(enc, gd, le))
        grads = {k: v for k, v in gd.items() if k not in self._linked_keys()}
        for k, v in ge.items():
            grads[k] = grads[k] + v if k in grads else v
        return loss, grads

    # -- the context ---------------------------------------------------------------
    def _split(self, params, inputs, lengths):
        lengths = lengths or {}
        if not isinstance(lengths, dict) or set(lengths) - set(PARTS):
            raise InputError("lengths is a dict {'encoder': [B] ints, 'decoder': [B] ints} (either may be left out)")
        linked = self.ed.linked_inputs()
        given = sorted(linked & set(inputs or {}))
        if given:
            raise InputError(f"input `{given[0]}` is the encoder's context, computed, not given")
        out = []
        for part in PARTS:
            rec = self.ed.parts[part]
            p = {s.name: params[s.name] for s in rec.params if s.name in params}
            x = {k: v for k, v in (inputs or {}).items() if k in rec.symbols and k not in linked}
            out.append((p, x, lengths.get(part)))
        return out

    def _last(self, enc: dict, le) -> tuple[np.ndarray, np.ndarray]:
        """(step, sequence) indices of each sequence's last encoder step."""
        states = np.asarray(enc[next(iter(set(self.ed.links.values())))])
        steps, batch = states.shape[0], states.shape[1]
        last = np.full(batch, steps - 1) if le is None else np.asarray(le, dtype=np.int64) - 1
        return last, np.arange(batch)

    def _context(self, enc: dict, xd: dict, le) -> tuple[dict, dict]:
        """The decoder's inputs with the linked ones added, and its initial states."""
        last, rows = self._last(enc, le)
        xd, init = dict(xd), {}
        for d, e in self.ed.links.items():
            final = np.ascontiguousarray(np.asarray(enc[e])[last, rows])
            (xd if self.ed.decoder.symbols[d].role is Role.INPUT else init)[d] = final
        return xd, init

    def _linked_keys(self) -> set[str]:
        return {d if self.ed.decoder.symbols[d].role is Role.INPUT else f"init:{d}" for d in self.ed.links}

    def _cotangents(self, enc: dict, gd: dict, le) -> dict:
        """The gradient of the loss with respect to each linked encoder state, as a
        [S, B, n] cotangent that is zero but at each sequence's last step."""
        last, rows = self._last(enc, le)
        cot = {}
        for d, e in self.ed.links.items():
            g = gd[d if self.ed.decoder.symbols[d].role is Role.INPUT else f"init:{d}"]
            if e not in cot:
                cot[e] = np.zeros(np.shape(enc[e]), dtype=np.asarray(g).dtype)
            cot[e][last, rows] += np.asarray(g)
        return cot


def compile(ed: EncoderDecoder, target: str = "cpu", dtype=np.float64, **options) -> CompiledEncoderDecoder:
    """Both parts compiled for `target` (options as for `uf.compile`)."""
    return CompiledEncoderDecoder(ed, target, dtype, **options)
