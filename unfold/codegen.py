"""Shared pieces of code generation: a line writer and a scalar math printer.

    w = Writer()
    with w.block("for b in range(B):"):
        w.line("x = 1.0")
    w.text()    # "for b in range(B):\\n    x = 1.0\\n"

`ScalarPrinter` prints a sympy expression of scalars as Python that numba
compiles for the CPU and for CUDA alike: `math` functions, overflow-free
sigmoid and softplus, small integer powers as products, numbers cast to the
kernel's dtype so float32 code stays float32.  `assignments` applies
`sympy.cse` to several expressions at once.
"""
from __future__ import annotations

import contextlib

import sympy as sp
from sympy.printing.pycode import PythonCodePrinter

from . import elementwise as ew


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
    """sympy -> scalar Python for numba (CPU and CUDA)."""

    def __init__(self, names: dict[sp.Symbol, str] | None = None, cast: str = "dt", tanh: str = "math.tanh"):
        super().__init__({"fully_qualified_modules": True, "standard": "python3"})
        self.names = names or {}
        self.cast = cast
        self.tanh = tanh  # the CPU's float32 kernels use a vectorizable rational tanh

    def _print_Symbol(self, s):
        return self.names.get(s, s.name)

    def _num(self, v) -> str:
        return f"{self.cast}({float(v)!r})"

    def _print_Integer(self, e):
        return self._num(e)

    _print_Rational = _print_Float = _print_NegativeOne = _print_One = _print_Zero = _print_Half = _print_Integer

    def _print_Pow(self, e, rational=False):
        base, exp = e.args
        b = self.parenthesize(base, sp.printing.precedence.PRECEDENCE["Pow"])
        if exp == sp.S.Half:
            return f"math.sqrt({self._print(base)})"
        if exp.is_Integer and 1 <= abs(int(exp)) <= 8 and base.is_Symbol:
            prod = "*".join([b] * abs(int(exp)))
            return f"({prod})" if exp > 0 else f"({self._num(1)}/({prod}))"
        if exp.is_Integer:  # LLVM turns an integer power into multiplications
            return f"{b}**{int(exp)}"
        return f"{b}**{self._print(exp)}"

    def _fn(self, name, e):
        return f"{name}({', '.join(self._print(a) for a in e.args)})"

    def _print_sigmoid(self, e):
        x = self._print(e.args[0])
        if self.tanh != "math.tanh":  # through tanh: no exp, so the loop vectorizes
            return f"({self._num(0.5)} * {self.tanh}({self._num(0.5)} * ({x})) + {self._num(0.5)})"
        # exp(-x) may be inf: 1/(1+inf) = 0, never NaN
        return f"({self._num(1)}/({self._num(1)} + math.exp(-({x}))))"

    def _print_softplus(self, e):
        x = self._print(e.args[0])
        return f"(max({x}, {self._num(0)}) + math.log1p(math.exp(-abs({x}))))"

    def _print_relu(self, e):
        return f"max({self._print(e.args[0])}, {self._num(0)})"

    def _print_step(self, e):
        return f"({self._num(1)} if {self._print(e.args[0])} > {self._num(0)} else {self._num(0)})"

    def _print_sign(self, e):
        x = self._print(e.args[0])
        return f"(({self._num(1)} if {x} > {self._num(0)} else {self._num(0)}) - ({self._num(1)} if {x} < {self._num(0)} else {self._num(0)}))"

    def _print_Abs(self, e):
        return self._fn("abs", e)

    def _print_tanh(self, e):
        return self._fn(self.tanh, e)

    def _print_exp(self, e):
        return self._fn("math.exp", e)

    def _print_log(self, e):
        return self._fn("math.log", e)


#: Every function an elementwise expression may contain has a printer method.
PRINTED_FUNCTIONS = {ew.sigmoid, ew.softplus, ew.relu, ew.step, sp.sign, sp.Abs, sp.tanh, sp.exp,
                     sp.log, sp.sin, sp.cos}


def assignments(exprs: dict[str, sp.Expr], printer: ScalarPrinter, prefix: str = "z"):
    """(temporaries, outputs): `sympy.cse` over all expressions, printed.

    The base of an integer power gets a temporary of its own, so `tanh(c)**2`
    prints as `z = tanh(c)` and `z*z`: a float32 `**` in numba would go
    through float64 `pow` and stop the loop from vectorizing."""
    keys = list(exprs)
    names = sp.numbered_symbols(prefix)
    temps, reduced = sp.cse([exprs[k] for k in keys], symbols=names)
    out_temps = []

    def split_powers(e):
        for pw in sorted(e.atoms(sp.Pow), key=sp.count_ops):
            base, n = pw.args
            if n.is_Integer and not base.is_Symbol and not base.is_Number:
                s = next(names)
                out_temps.append((s, split_powers(base)))
                e = e.subs(base, s)
        return e

    for sym, e in temps:
        out_temps.append((sym, split_powers(e)))
    reduced = [split_powers(e) for e in reduced]
    lines = [(str(s), printer.doprint(e)) for s, e in out_temps]
    return lines, {k: printer.doprint(e) for k, e in zip(keys, reduced)}
