"""Is elementwise math something the kernels can run?  Checks on sympy expressions.

    problem(expr)               why it is not real, finite math (zoo, nan, oo, I, a number
                                beyond float64), or None
    too_big(expr)               why it is too large for sympy's derivatives and the
                                printers (MAX_HEIGHT, MAX_SIZE), or None
    compose_bounded(fn, args)   elementwise.compose, refused before it is built if it
                                could be too large

Each walks every distinct subexpression once: a tree that repeats a
subexpression (f(f(z)) + f(z), nested) can be exponentially larger than the
expression in memory.
"""
from __future__ import annotations

import math

import sympy as sp

from .elementwise import compose, distinct

#: the deepest elementwise math of one equation or function, user functions expanded
MAX_HEIGHT = 40
#: the most nodes of that math, as a tree
MAX_SIZE = 1000
REAL_HELP = "real-valued math: no division by zero, no root or log of a negative number"
BOUNDS_HELP = (f"at most {MAX_HEIGHT} levels of nested functions and {MAX_SIZE} nodes once user "
               "functions are expanded; split the math with intermediates: a[t] = f(...); b[t] = g(a[t])")



def problem(expr: sp.Expr) -> str | None:
    """Why `expr` is not real math a kernel can run (None if it is): a
    division by zero or log(0) (zoo, nan), an infinity, a complex number, a
    number beyond float64.  Walks each distinct subexpression once."""
    constant: dict = {}
    for e in distinct(expr, post=True):
        constant[e] = not e.is_Symbol and all(constant[a] for a in e.args)
        if e in (sp.zoo, sp.nan):
            return "is undefined (a division by zero, log(0) or the like)"
        if e in (sp.oo, sp.S.NegativeInfinity):
            return "is infinite"
        if e is sp.I or (constant[e] and not e.is_Atom and e.is_extended_real is False):
            return "is a complex number, not a real one"
        if e.is_Number and not _finite(e):
            return "contains a number beyond the range of float64"
    return None


class TooLarge(ValueError):
    """Math that would exceed MAX_HEIGHT or MAX_SIZE."""


def too_big(expr: sp.Expr) -> str | None:
    """Why `expr` is too large for sympy's derivatives and the code printers (None if it is not)."""
    height, size, _ = measure(expr)
    return _too_big(height, size)


def _too_big(height: int, size: int, bound: str = "") -> str | None:
    if height > MAX_HEIGHT or size > MAX_SIZE:
        return (f"is too large once the functions it calls are expanded: {bound}{height} levels deep, "
                f"{bound}{size} nodes")
    return None


def compose_bounded(fn: sp.Lambda, args: list[sp.Expr]) -> sp.Expr:
    """compose(fn, args), refused (TooLarge) before it is built if it could
    exceed MAX_HEIGHT or MAX_SIZE: sympy takes exponential time to build some
    large expressions (tanh of sums of tanh asks `is_finite`, which expands)."""
    height, size, leaves = measure(fn.expr)
    parts = [measure(a) for a in args] or [(1, 1, 0)]
    bound = _too_big(height - 1 + max(h for h, _, _ in parts), size + leaves * max(n for _, n, _ in parts),
                     "up to ")
    if bound:
        raise TooLarge(bound)
    return compose(fn, args)


def measure(expr: sp.Expr) -> tuple[int, int, int]:
    """(height, size, symbols) of `expr` as a tree -- symbols: how many of its
    leaves are symbols -- computed over its distinct subexpressions (a tree
    that repeats a subexpression can be exponentially larger)."""
    memo: dict = {}
    for e in distinct(expr, post=True):
        kids = [memo[a] for a in e.args]
        memo[e] = (1 + max((k[0] for k in kids), default=0), min(1 + sum(k[1] for k in kids), 2 ** 62),
                   1 if e.is_Symbol else min(sum(k[2] for k in kids), 2 ** 62))
    return memo[expr]


def _finite(n: sp.Number) -> bool:
    try:
        return math.isfinite(float(n))
    except OverflowError:
        return False
