"""Shared pieces of code generation: a line writer and a scalar math printer.

    w = Writer()
    with w.block("for b in range(B):"):
        w.line("x = 1.0")
    w.text()    # "for b in range(B):\\n    x = 1.0\\n"

`ScalarPrinter` prints a sympy expression of scalars as Python that numba
compiles for the CPU and for CUDA alike: each function as its registry entry
says, small integer powers as products, numbers cast to the kernel's dtype so
float32 code stays float32.  `assignments` applies `sympy.cse` to several
expressions at once, its temporaries named by the caller.
"""
from __future__ import annotations

import contextlib
import itertools

import sympy as sp
from sympy.printing.pycode import PythonCodePrinter

from ..lang import elementwise as ew


class Writer:
    """Indented lines of source."""

    def __init__(self):
        self.lines: list[str] = []
        self.depth = 0

    def line(self, text: str = ""):
        self.lines.append("    " * self.depth + text if text else "")

    @contextlib.contextmanager
    def block(self, head: str):
        """`head` and an indented body; `pass` where the body wrote nothing
        (a loop whose stages have no adjoint), so the text always parses."""
        self.line(head)
        start = len(self.lines)
        self.depth += 1
        yield
        if len(self.lines) == start:
            self.line("pass")
        self.depth -= 1

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


class ScalarPrinter(PythonCodePrinter):
    """sympy -> scalar Python for numba (CPU and CUDA).

    `names` maps symbols to the locals that hold them; numbers are cast to
    the kernel's dtype (`dt(0.5)`, and pi or sqrt(2) too), so float32 code
    stays float32; every function prints as its registry entry says
    (`unfold.lang.elementwise`); `tanh` names the tanh to call (the CPU's
    float32 kernels use a rational tanh that vectorizes)."""

    def __init__(self, names: dict[sp.Symbol, str] | None = None, cast: str = "dt", tanh: str = "math.tanh"):
        super().__init__({"fully_qualified_modules": True, "standard": "python3"})
        self.names = names or {}
        self.cast = cast
        self.tanh = tanh

    @property
    def fast_tanh(self) -> bool:
        return self.tanh != "math.tanh"

    def num(self, v) -> str:
        return f"{self.cast}({float(v)!r})"

    def _print(self, expr, **kwargs):
        entry = ew.BY_SYMPY.get(getattr(expr, "func", None))
        if entry is not None:
            return entry.numba(self, *(self._print(a) for a in expr.args))
        if isinstance(expr, sp.Basic) and expr.is_number and not expr.is_Integer and not expr.is_Rational:
            return self.num(sp.N(expr))  # pi, sqrt(2), exp(1): one number of the kernel's dtype
        return super()._print(expr, **kwargs)

    def _print_Symbol(self, s):
        return self.names.get(s, s.name)

    def _print_Integer(self, e):
        return self.num(e)

    _print_Rational = _print_Float = _print_NegativeOne = _print_One = _print_Zero = _print_Half = _print_Integer

    def _print_Pow(self, e, rational=False):
        base, exp = e.args
        b = self.parenthesize(base, sp.printing.precedence.PRECEDENCE["Pow"])
        if exp == sp.S.Half:
            return f"math.sqrt({self._print(base)})"
        if exp.is_Integer and 1 <= abs(int(exp)) <= 8 and base.is_Symbol:
            prod = "*".join([b] * abs(int(exp)))
            return f"({prod})" if exp > 0 else f"({self.num(1)}/({prod}))"
        if exp.is_Integer:  # LLVM turns an integer power into multiplications
            return f"{b}**{int(exp)}"
        return f"{b}**{self._print(exp)}"


def assignments(exprs: dict, printer: ScalarPrinter, fresh, defs=()):
    """(lines, outputs): `sympy.cse` over all expressions at once, printed.

    `defs` are locals defined in order, [(symbol, expr)], which later
    definitions and `exprs` may read (a fused stage's adjoint tape); the
    lines define cse's temporaries and these locals, each after what it
    reads.  Temporaries are named by `fresh()` (the printers' `_z0, _z1, ...`:
    an underscore, which no handed-out name has, so they meet no other name).
    The base of an integer power gets a temporary of its own, so `tanh(c)**2`
    prints as `z = tanh(c)` and `z*z`: a float32 `**` in numba would go
    through float64 `pow` and stop the loop from vectorizing."""
    keys = list(exprs)
    names = (sp.Symbol(fresh(), real=True) for _ in itertools.count())
    temps, reduced = sp.cse([e for _, e in defs] + [exprs[k] for k in keys], symbols=names)
    made: list[tuple[sp.Symbol, sp.Expr]] = []
    for sym, e in temps:
        made.append((sym, _split_powers(e, names, made)))
    reduced = [_split_powers(e, names, made) for e in reduced]
    local = dict(made) | {s: e for (s, _), e in zip(defs, reduced)}
    lines, done = [], set()

    def define(sym):  # what it reads first, then itself
        if sym in done or sym not in local:
            return
        done.add(sym)
        for dep in sorted(local[sym].free_symbols, key=lambda s: s.name):
            define(dep)
        lines.append((sym.name, printer.doprint(local[sym])))

    for sym in [s for s, _ in defs] + [s for s, _ in made]:
        define(sym)
    return lines, {k: printer.doprint(e) for k, e in zip(keys, reduced[len(defs):])}


def _split_powers(e, names, made: list):
    """`e` with the base of each integer power replaced by a new temporary (added to `made`)."""
    for pw in sorted(e.atoms(sp.Pow), key=sp.count_ops):
        base, n = pw.args
        if n.is_Integer and not base.is_Symbol and not base.is_Number:
            s = next(names)
            made.append((s, _split_powers(base, names, made)))
            e = e.subs(base, s)
    return e
