"""Size arithmetic: dims and the numbers written with them, evaluated safely.

A size expression is what a model writes for a shape or an initializer's
argument: `64`, `"H"`, `("*", 4, "H")`, `("sqrt", "H")`.

    eval_size(("*", 4, "H"), {"H": 16})        # 64
    eval_size(("/", 1, ("sqrt", "H")), {"H": 16}, number=True)   # 0.25

Every operation is bounded: a result beyond `LIMIT` in magnitude, a power
with a huge exponent, a division by zero or a complex result raises
`SizeError` before any giant number is built (`dim(10**10**10)` must not
hang).  Sizes (`number=False`) must come out whole.
"""
from __future__ import annotations

import math
from typing import Union

#: the largest magnitude a size or a number written with dims may have
LIMIT = 2 ** 53

# A size or a number written with dims: 64, "H", ("*", 4, "H"), ("sqrt", "H").
SizeExpr = Union[int, float, str, tuple]


class SizeError(ValueError):
    """A size expression that has no sensible value (the caller adds the location)."""


def _check(v):
    if isinstance(v, complex) or (isinstance(v, float) and not math.isfinite(v)):
        raise SizeError(f"{v} is not a finite real number")
    if abs(v) > LIMIT:
        raise SizeError(f"{_short(v)} is larger than {LIMIT} (2**53)")
    return v


def _short(v) -> str:
    text = str(v)
    return text if len(text) < 30 else f"a number of {len(text)} digits"


def _pow(a, b):
    if a == 0 and b < 0:
        raise SizeError(f"{a}**{_short(b)} divides by zero")
    if a < 0 and not float(b).is_integer():
        raise SizeError(f"({a})**{_short(b)} is not a real number")
    if a != 0 and b * math.log2(abs(a)) > 53:  # decided from logarithms: no giant number is built
        raise SizeError(f"{_short(a)}**{_short(b)} is larger than {LIMIT} (2**53)")
    if isinstance(a, int) and isinstance(b, int) and b >= 0:
        return a ** b  # exact
    return float(a) ** float(b)


def _div(a, b):
    if b == 0:
        raise SizeError("division by zero")
    return a / b


def _floordiv(a, b):
    if b == 0:
        raise SizeError("division by zero")
    return a // b


def _sqrt(a):
    if a < 0:
        raise SizeError(f"sqrt({a}) is not a real number")
    return math.sqrt(a)


_ARITH = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
          "/": _div, "//": _floordiv, "**": _pow, "neg": lambda a: -a, "sqrt": _sqrt}
_ARITY = {op: 1 if op in ("neg", "sqrt") else 2 for op in _ARITH}


def eval_size(e: SizeExpr, dims: dict[str, int], number: bool = False):
    """The value of `e`; an unknown dim raises KeyError(name), a bad value SizeError.
    A size (number=False) is a whole number: 6/2 is 3, 7/2 is an error."""
    v = _eval(e, dims)
    if not number:
        if isinstance(v, float):
            if not v.is_integer():
                raise SizeError(f"{v} is not a whole number")
            v = int(v)
    return v


def _eval(e: SizeExpr, dims: dict[str, int]):
    """Iterative post-order evaluation: a deep expression cannot exhaust the stack."""
    stack, values = [(e, False)], []
    while stack:
        node, ready = stack.pop()
        if isinstance(node, bool) or not isinstance(node, (int, float, str, tuple)):
            raise SizeError(f"{node!r} is not a number, a dim or arithmetic of those")
        if isinstance(node, (int, float)):
            values.append(_check(node))
        elif isinstance(node, str):
            values.append(dims[node])
        elif not ready:
            if not node or node[0] not in _ARITY or len(node) != _ARITY[node[0]] + 1:
                raise SizeError(f"{node!r} is not a size expression")
            stack.append((node, True))
            stack.extend((a, False) for a in reversed(node[1:]))
        else:
            n = len(node) - 1
            args = values[len(values) - n:]
            del values[len(values) - n:]
            values.append(_check(_ARITH[node[0]](*args)))
    return values[0]


def size_text(e: SizeExpr) -> str:
    if isinstance(e, (int, float, str)):
        return str(e)
    op, *args = e
    if op == "neg":
        return f"-{size_text(args[0])}"
    if op == "sqrt":
        return f"sqrt({size_text(args[0])})"
    return f"{size_text(args[0])}{op}{size_text(args[1])}"
