"""The `.rnn` text format: parsed with `ast`, never evaluated.

Every line of a model file is Python syntax, so one `ast.parse` reads it all
and every error has a line and a column:

    H = dim(16); D = dim(4)                  # named sizes, overridable by bind()
    x = input(D)                             # a sequence: x[t], t = 1..T
    W = param(H, H, init=orthogonal())       # shared by every step
    h = state(H, init=0)                     # carried across steps
    h[t] = tanh(W @ h[t-1] + U @ x[t] + b)   # an equation
    p[t] = softmax(V @ h[t] + c * t)         # `t` alone: the step index, 0 at the first step
    loss = mean_t(mse(h[t], y[t]))           # sum_t, mean_t or last_t
    def softsign(z): return z / (1 + abs(z)) # elementwise, kept as sympy

`parse(text)` returns a checked `Recurrence`; syntax this module does not know
is a `ModelError` pointing at it.  The text itself (encoding, lines, columns,
nesting depth) is `source.py`'s; a `def` body is `userfn.py`'s.
"""
from __future__ import annotations

import ast
import math
from pathlib import Path

import sympy as sp

from . import elementwise as ew
from . import initializers
from .errors import ModelError
from .ir import Call, Equation, Init, Lit, Loss, Model, Read, Reduce, Role, Symbol
from .ops import CALLABLE, EW, MATMUL, SLICE, STEP_INDEX, embedding_lookup
from .recurrence import Recurrence
from .source import Source, decode
from .userfn import define

DECLARATIONS = {"input": Role.INPUT, "target": Role.TARGET, "param": Role.PARAM,
                "const": Role.CONST, "state": Role.STATE}
_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow"}
_SIZE_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
             ast.Pow: "**"}
_OPERATORS = {ast.FloorDiv: "//", ast.Mod: "%", ast.LShift: "<<", ast.RShift: ">>", ast.BitOr: "|",
              ast.BitXor: "^", ast.BitAnd: "&", ast.Not: "not", ast.Invert: "~"}
_STATEMENT_HELP = ("a declaration (`x = input(D)`), an equation (`h[t] = ...`), "
                   "`loss = sum_t(...)`, or a `def` of an elementwise function")
_EXPR_HELP = "names, v[t-k], numbers, + - * / ** @, and function calls"
#: where W.T may stand
TRANSPOSE_HELP = "W.T @ v, with W a param or const matrix"
#: the largest delay a read may have: `h[t-1000]`
MAX_DELAY = 1000
#: the largest model file read (a model is a page of text)
MAX_BYTES = 10 * 2 ** 20


def load(path: str | Path) -> Recurrence:
    return parse(read_model(path), file=str(path), name=Path(path).stem)


def read_model(path: str | Path) -> str:
    """The text of a model file, decoded (lang/source.py), or a ModelError: unreadable, too large, not UTF-8."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise ModelError(f"cannot read model file {path}: {e.strerror or e}",
                         expected="the path of a readable .rnn file") from None
    if len(data) > MAX_BYTES:
        raise ModelError(f"model file {path} is larger than {MAX_BYTES >> 20} MiB",
                         expected="a model file of a few pages")
    return decode(data, str(path))


def parse(text: str | bytes, file: str = "<model>", name: str | None = None) -> Recurrence:
    if isinstance(text, (bytes, bytearray)):
        text = decode(bytes(text), file)
    return Recurrence.check(_Parser(Source(text, file)).run(name or Path(file).stem))


class _Parser:
    def __init__(self, source: Source):
        self.src = source
        self.file = source.file
        self.dims: dict = {}
        self.symbols: dict[str, Symbol] = {}
        self.equations: list[Equation] = []
        self.loss: Loss | None = None
        self.functions: dict[str, sp.Lambda] = {}

    def loc(self, node: ast.AST):
        return self.src.loc(node)

    def error(self, node: ast.AST, message: str, expected: str):
        raise ModelError(message, self.loc(node), expected)

    # -- statements ----------------------------------------------------------
    def run(self, name: str) -> Model:
        for stmt in self.src.parse().body:
            self.statement(stmt)
        return Model(name, self.dims, self.symbols, self.equations, self.loss, self.functions, self.file)

    def statement(self, stmt: ast.stmt):
        if isinstance(stmt, ast.FunctionDef):
            self.functions[stmt.name] = define(self, stmt)
            return
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
            return  # a docstring
        if not isinstance(stmt, ast.Assign) or len(stmt.targets) != 1:
            self.error(stmt, "this statement is not part of the model language", _STATEMENT_HELP)
        target, value = stmt.targets[0], stmt.value
        if isinstance(target, ast.Name) and target.id == "loss":
            return self.loss_statement(stmt, value)
        if isinstance(target, ast.Name):
            return self.declaration(target, value)
        if (isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name)
                and isinstance(target.slice, ast.Name) and target.slice.id == "t"):
            return self.equation(stmt, target.value.id, value)
        self.error(target, "cannot assign to this", "a name (`x = input(D)`) or `v[t]`")

    def declaration(self, target: ast.Name, value: ast.expr):
        name = target.id
        if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
                and value.func.id in ("dim", *DECLARATIONS)):
            self.error(value, f"`{name} = ...` must declare something",
                       "dim(n), input(...), target(...), param(...), const(...) or state(...)")
        if name in self.dims or name in self.symbols or name == "t":
            self.error(target, f"`{name}` is declared twice" if name != "t" else "`t` is the time index",
                       "a new name")
        kind = value.func.id
        if kind == "dim":
            if len(value.args) != 1 or value.keywords:
                self.error(value, "dim takes one size", "dim(64)")
            self.dims[name] = (self.size(value.args[0]), self.loc(target))
            return
        role = DECLARATIONS[kind]
        sym = Symbol(name, role, tuple(self.size(a) for a in value.args), self.loc(target))
        for kw in value.keywords:
            self.option(sym, kind, kw)
        self.symbols[name] = sym

    def option(self, sym: Symbol, kind: str, kw: ast.keyword):
        allowed = {Role.PARAM: {"init"}, Role.CONST: {"init"},
                   Role.STATE: {"init", "direction"}}.get(sym.role, set())
        if kw.arg not in allowed:
            self.error(kw.value if kw.arg else kw, f"{kind}() has no option `{kw.arg or '**'}`",
                       ", ".join(f"{k}=..." for k in sorted(allowed)) or f"{kind}(<size>) with no options")
        if kw.arg == "direction":
            if not (isinstance(kw.value, ast.Constant) and kw.value.value in ("forward", "backward")):
                self.error(kw.value, "bad direction", '"forward" or "backward"')
            sym.direction = 1 if kw.value.value == "forward" else -1
        elif sym.role is Role.STATE:
            sym.init = self.state_init(kw.value)
        else:
            sym.init = self.initializer(kw.value)

    def state_init(self, node: ast.expr):
        if isinstance(node, ast.Name):
            return node.id
        number = self.number(node)
        if number is None:
            self.error(node, "a state's initial value must be a number or a param's name", "init=0 or init=h0")
        return number

    def initializer(self, node: ast.expr) -> Init:
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)) or node.keywords:
            self.error(node, "not an initializer call", ", ".join(f"{k}(...)" for k in initializers.ARITY))
        return initializers.make(node.func.id, tuple(self.size(a, number=True) for a in node.args),
                                 self.loc(node))

    def literal(self, node: ast.expr):
        """The value of a number written as digits (int or float), None if `node` is not one."""
        if not (isinstance(node, ast.Constant) and type(node.value) in (int, float)):
            return None
        try:
            if math.isfinite(float(node.value)):
                return node.value
        except OverflowError:  # an int beyond float64
            pass
        self.error(node, "this number is beyond the range of float64 (about 1.8e308)", "a finite number")

    def number(self, node: ast.expr) -> float | None:
        """A literal number, perhaps negated (`-0.5`), as a float; None if `node` is not one."""
        sign = 1.0
        while isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            sign = -sign if isinstance(node.op, ast.USub) else sign
            node = node.operand
        value = self.literal(node)
        return None if value is None else sign * float(value)

    def size(self, node: ast.expr, number: bool = False):
        """A size (or, with number=True, a real number) written with dims."""
        value = self.literal(node)
        if value is not None:
            if not number and not isinstance(value, int):
                self.error(node, "a size must be a whole number", "an integer or a dim")
            return value
        if isinstance(node, ast.Name):
            if node.id not in self.dims:
                self.error(node, f"undeclared dim `{node.id}`",
                           f"a dim declared above, e.g. `{node.id} = dim(16)`" +
                           (f"; declared dims: {', '.join(self.dims)}" if self.dims else ""))
            return node.id
        if isinstance(node, ast.BinOp) and type(node.op) in _SIZE_OPS:
            return (_SIZE_OPS[type(node.op)], self.size(node.left, number), self.size(node.right, number))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return ("neg", self.size(node.operand, number))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd):
            return self.size(node.operand, number)
        if number and isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "sqrt" \
                and len(node.args) == 1 and not node.keywords:
            return ("sqrt", self.size(node.args[0], number))
        self.error(node, "not a size" if not number else "not a number",
                   "an integer, a dim, or arithmetic of those (4*H)" if not number else
                   "a number, a dim, or arithmetic of those with + - * / // ** and sqrt (1/sqrt(H))")

    # -- equations -----------------------------------------------------------
    def equation(self, stmt: ast.Assign, name: str, value: ast.expr):
        if any(e.name == name for e in self.equations):
            self.error(stmt.targets[0], f"`{name}[t]` is defined twice", "one equation per variable")
        self.equations.append(Equation(name, self.expr(value), self.loc(stmt.targets[0])))

    def loss_statement(self, stmt: ast.Assign, value: ast.expr):
        reduces = {r.value: r for r in Reduce}
        if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
                and value.func.id in reduces and len(value.args) == 1 and not value.keywords):
            self.error(value, "the loss must reduce a per-step term over time",
                       "sum_t(...), mean_t(...) or last_t(...)")
        if self.loss is not None:
            self.error(stmt, "a second loss", "one `loss = ...` per model")
        self.loss = Loss(reduces[value.func.id], self.expr(value.args[0]), self.loc(value))

    def expr(self, node: ast.expr):
        loc = self.loc(node)
        if isinstance(node, ast.Constant):
            value = self.literal(node)
            if value is None:
                self.error(node, "not a number", "a number, a name or an expression")
            return Lit(float(value), loc)
        if isinstance(node, ast.Name):
            if node.id == "t":  # the step index as a value: 0 at the first step
                return Call(STEP_INDEX, (), loc)
            return Read(node.id, None, loc)
        if isinstance(node, ast.Subscript):
            return self.subscript(node, loc)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
            left = node.left
            if isinstance(left, ast.Attribute) and left.attr == "T" and isinstance(left.value, ast.Name):
                return Call(MATMUL, (Read(left.value.id, None, self.loc(left.value)), self.expr(node.right)), loc,
                            attrs=("T",))   # W.T @ v: a product with W's transpose
            return Call(MATMUL, (self.expr(left), self.expr(node.right)), loc)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            name = _BINOPS[type(node.op)]
            return Call(EW, (self.expr(node.left), self.expr(node.right)), loc, name, ew.OPERATORS[name])
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return Call(EW, (self.expr(node.operand),), loc, "neg", ew.OPERATORS["neg"])
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd):
            return self.expr(node.operand)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            return self.call(node, loc)
        if isinstance(node, ast.Attribute) and node.attr == "T":
            self.error(node, "a transposed matrix (`W.T`) is only the left side of a product", TRANSPOSE_HELP)
        self.not_math(node, _EXPR_HELP)

    def not_math(self, node: ast.expr, expected: str):
        op = _OPERATORS.get(type(getattr(node, "op", None)))
        what = f"the operator `{op}`" if op else "this"
        if isinstance(node, (ast.Compare, ast.BoolOp)):
            what, expected = "a comparison", "where(c, a, b): a where c > 0, else b"
        self.error(node, f"{what} is not part of the equation language", expected)

    def subscript(self, node: ast.Subscript, loc):
        if isinstance(node.slice, ast.Slice):
            s = node.slice
            if s.step is not None or s.lower is None or s.upper is None:
                self.error(node.slice, "a slice needs both bounds and no step", "z[0:H]")
            return Call(SLICE, (self.expr(node.value),), loc, attrs=(self.size(s.lower), self.size(s.upper)))
        if not isinstance(node.value, ast.Name):
            self.error(node, "only a variable can be indexed by time", "v[t], v[t-1], v[t+1]")
        if isinstance(node.slice, ast.Subscript):   # E[x[t]]: an embedding lookup (lang/ops/index.py)
            return embedding_lookup(Read(node.value.id, None, self.loc(node.value)), self.expr(node.slice), loc)
        return Read(node.value.id, self.offset(node.slice), loc)

    def offset(self, node: ast.expr) -> int:
        if isinstance(node, ast.Name) and node.id == "t":
            return 0
        if (isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub))
                and isinstance(node.left, ast.Name) and node.left.id == "t"
                and isinstance(node.right, ast.Constant) and type(node.right.value) is int):
            k = node.right.value
            if k > MAX_DELAY:
                self.error(node.right, f"a delay of {k} steps is more than the limit, {MAX_DELAY}",
                           f"t-k or t+k with k <= {MAX_DELAY}")
            return k if isinstance(node.op, ast.Add) else -k
        self.error(node, "bad time index", "t, t-k or t+k with a whole number k")

    def flags(self, node: ast.Call, op) -> tuple:
        """The keywords an op allows (`dropout(v, p, variational=True)`), each True
        or False as written: the names of those set True."""
        allowed, f, on = getattr(op, "keywords", ()), node.func.id, []
        usage = f"{f}({op.signature}" + "".join(f", {k}=True" for k in allowed) + ")" if op else \
            f"{f}(...) with positional arguments"
        for kw in node.keywords:
            if kw.arg not in allowed:
                self.error(kw.value if kw.arg else kw, f"{f}() takes no keyword argument `{kw.arg}`" if kw.arg else
                           f"{f}() takes no ** arguments", usage)
            if not (isinstance(kw.value, ast.Constant) and type(kw.value.value) is bool):
                self.error(kw.value, f"`{kw.arg}=` takes True or False", f"{kw.arg}=True")
            if sum(k.arg == kw.arg for k in node.keywords) > 1:
                self.error(kw, f"`{kw.arg}=` is given twice", usage)
            if kw.value.value:
                on.append(kw.arg)
        return tuple(on)

    def call(self, node: ast.Call, loc):
        f = node.func.id
        flags = self.flags(node, CALLABLE.get(f))
        args = tuple(self.expr(a) for a in node.args)
        fn = ew.FUNCTIONS.get(f) or self.functions.get(f)
        if fn is not None:
            if len(args) != len(fn.variables):
                self.error(node, f"{f}() takes {len(fn.variables)} argument(s), got {len(args)}",
                           f"{f}({', '.join(f'a{i}' for i in range(len(fn.variables)))})")
            return Call(EW, args, loc, f, fn)
        if f in CALLABLE:
            CALLABLE[f].check_arity(len(args), self.loc(node))
            return Call(CALLABLE[f], args, loc, attrs=flags)
        self.error(node.func, f"unknown function `{f}`", "one of " + ", ".join(
            [*ew.FUNCTIONS, *self.functions, *CALLABLE]) + ", or a `def` above its use")
