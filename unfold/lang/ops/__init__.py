"""The op registry: one entry per op (`base.Op`), every stage reads it.

    from unfold.lang.ops import REGISTRY, MATMUL, EW
    REGISTRY["mse"].forward([a, b], node, ctx)

Elementwise *functions* (tanh, sigmoid, erf, where, ...) are entries of
`unfold.lang.elementwise`; they all run through the one elementwise op `ew`.
"""
from .base import REGISTRY, Lowering, Op, lookup, unbroadcast
from .dropout import DROPOUT
from .index import OneHot
from .index import lookup as embedding_lookup
from .linear import EW, MATMUL
from .losses import MSE, SoftmaxCrossEntropy, log_softmax
from .softmax import LogSoftmax, Softmax
from .time import STEP_INDEX, Assign, InitialState, TimeReduce
from .vector import Concat, Mean, Slice, Sum

ASSIGN, INIT, LOSS_OP, SLICE, CONCAT = Assign, InitialState, TimeReduce, Slice, Concat

#: ops a model calls by name: concat(a, b), mse(a, b), ...
CALLABLE = {op.name: op for op in REGISTRY.values() if op.in_models}

__all__ = ["REGISTRY", "Lowering", "Op", "lookup", "unbroadcast", "EW", "MATMUL", "ASSIGN", "INIT",
           "LOSS_OP", "SLICE", "CONCAT", "CALLABLE", "MSE", "SoftmaxCrossEntropy", "Mean", "Sum",
           "log_softmax", "Softmax", "LogSoftmax", "STEP_INDEX", "OneHot", "embedding_lookup", "DROPOUT"]
