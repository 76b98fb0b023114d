"""Encoder–decoder models (Deep Learning §10.4): two recurrences joined by a context.

    ed = uf.seq2seq.load(path)          # a .rnn file with `with encoder:` and `with decoder(...):` blocks
    fn = uf.seq2seq.compile(ed, "cpu")  # both parts compiled; value_and_grad through both
"""
from .compiled import CompiledEncoderDecoder, compile
from .model import EncoderDecoder, connect, load, parse_encoder_decoder

__all__ = ["CompiledEncoderDecoder", "EncoderDecoder", "compile", "connect", "load",
           "parse_encoder_decoder"]
