"""The `.rnn` text format: parsed with `ast`, never evaluated.

Every line of a model file is Python syntax, so one `ast.parse` reads it all
and every error has a line and a column:

    H = dim(16); D = dim(4)                  # named sizes, overridable by bind()
    x = input(D)                             # a sequence: x[t], t = 1..T
    W = param(H, H, init=orthogonal())       # shared by every step
    h = state(H, init=0)                     # carried across steps
    h[t] = tanh(W @ h[t-1] + U @ x[t] + b)   # an equation
    loss = mean_t(mse(h[t], y[t]))           # sum_t, mean_t or last_t
    def softsign(z): return z / (1 + abs(z)) # elementwise, kept as sympy

`parse(text)` returns a checked `Recurrence`; syntax this module does not know
is a `ModelError` pointing at it.
"""
from __future__ import annotations

import ast
from pathlib import Path

import sympy as sp

from . import elementwise as ew
from . import initializers
from .errors import Loc, ModelError
from .ir import Call, Equation, Init, Lit, Loss, Model, Read, Reduce, Role, Symbol
from .ops import CALLABLE, EW, MATMUL, SLICE
from .recurrence import Recurrence

DECLARATIONS = {"input": Role.INPUT, "target": Role.TARGET, "param": Role.PARAM,
                "const": Role.CONST, "state": Role.STATE}
_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow"}
_SIZE_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
             ast.Pow: "**"}
_STATEMENT_HELP = ("a declaration (`x = input(D)`), an equation (`h[t] = ...`), "
                   "`loss = sum_t(...)`, or a `def` of an elementwise function")


def load(path: str | Path) -> Recurrence:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ModelError(f"cannot read model file {path}: {e.strerror}") from None
    return parse(text, file=str(path), name=path.stem)


def parse(text: str, file: str = "<model>", name: str | None = None) -> Recurrence:
    return Recurrence.check(_Parser(text, file).run(name or Path(file).stem))


class _Parser:
    def __init__(self, text: str, file: str):
        self.lines = text.splitlines()
        self.file = file
        self.text = text
        self.dims: dict = {}
        self.symbols: dict[str, Symbol] = {}
        self.equations: list[Equation] = []
        self.loss: Loss | None = None
        self.functions: dict[str, sp.Lambda] = {}

    # -- helpers -------------------------------------------------------------
    def loc(self, node: ast.AST) -> Loc:
        line = node.lineno
        src = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        end = node.end_col_offset if getattr(node, "end_lineno", line) == line else len(src)
        return Loc(self.file, line, node.col_offset + 1, (end or node.col_offset + 1) + 1, src)

    def error(self, node: ast.AST, message: str, expected: str | None = None):
        raise ModelError(message, self.loc(node), expected)

    # -- statements ----------------------------------------------------------
    def run(self, name: str) -> Model:
        try:
            tree = ast.parse(self.text, filename=self.file)
        except SyntaxError as e:
            line = e.lineno or 1
            src = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
            col = e.offset or 1
            message = e.msg if e.msg.startswith("invalid syntax") else f"invalid syntax: {e.msg}"
            raise ModelError(message, Loc(self.file, line, col, col + 1, src),
                             "Python expression syntax, one statement per line") from None
        for stmt in tree.body:
            self.statement(stmt)
        return Model(name, self.dims, self.symbols, self.equations, self.loss,
                          self.functions, self.file)

    def statement(self, stmt: ast.stmt):
        if isinstance(stmt, ast.FunctionDef):
            return self.function(stmt)
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
        allowed = {Role.PARAM: {"init"}, Role.CONST: {"init"},
                   Role.STATE: {"init", "direction"}}.get(role, set())
        for kw in value.keywords:
            if kw.arg not in allowed:
                self.error(kw.value, f"{kind}() has no option `{kw.arg}`",
                           ", ".join(sorted(allowed)) or "no options")
            if kw.arg == "direction":
                if not (isinstance(kw.value, ast.Constant) and kw.value.value in ("forward", "backward")):
                    self.error(kw.value, "bad direction", '"forward" or "backward"')
                sym.direction = 1 if kw.value.value == "forward" else -1
            elif role is Role.STATE:
                sym.init = self.state_init(kw.value)
            else:
                sym.init = self.initializer(kw.value)
        self.symbols[name] = sym

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

    def number(self, node: ast.expr):
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return float(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            v = self.number(node.operand)
            return None if v is None else -v
        return None

    def size(self, node: ast.expr, number: bool = False):
        """A size (or, with number=True, a real number) written with dims."""
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            if not number and not isinstance(node.value, int):
                self.error(node, "a size must be a whole number", "an integer or a dim")
            return node.value
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
        if number and isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "sqrt" and len(node.args) == 1:
            return ("sqrt", self.size(node.args[0], number))
        self.error(node, "not a size", "an integer, a dim, or arithmetic of those (4*H)")

    # -- equations -----------------------------------------------------------
    def equation(self, stmt: ast.Assign, name: str, value: ast.expr):
        if any(e.name == name for e in self.equations):
            self.error(stmt.targets[0], f"`{name}[t]` is defined twice", "one equation per variable")
        self.equations.append(Equation(name, self.expr(value), self.loc(stmt.targets[0])))

    def loss_statement(self, stmt: ast.Assign, value: ast.expr):
        reduces = {r.value: r for r in Reduce}
        if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
                and value.func.id in reduces and len(value.args) == 1):
            self.error(value, "the loss must reduce a per-step term over time",
                       "sum_t(...), mean_t(...) or last_t(...)")
        if self.loss is not None:
            self.error(stmt, "a second loss", "one `loss = ...` per model")
        self.loss = Loss(reduces[value.func.id], self.expr(value.args[0]), self.loc(value))

    def expr(self, node: ast.expr):
        loc = self.loc(node)
        if isinstance(node, ast.Constant):
            if self.number(node) is None:
                self.error(node, "not a number", "a number, a name or an expression")
            return Lit(float(node.value), loc)
        if isinstance(node, ast.Name):
            if node.id == "t":
                self.error(node, "`t` is the time index", "v[t] or v[t-1]")
            return Read(node.id, None, loc)
        if isinstance(node, ast.Subscript):
            return self.subscript(node, loc)
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.MatMult):
                return Call(MATMUL, (self.expr(node.left), self.expr(node.right)), loc)
            if type(node.op) in _BINOPS:
                name = _BINOPS[type(node.op)]
                return Call(EW, (self.expr(node.left), self.expr(node.right)), loc, name, ew.OPERATORS[name])
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub):
                return Call(EW, (self.expr(node.operand),), loc, "neg", ew.OPERATORS["neg"])
            if isinstance(node.op, ast.UAdd):
                return self.expr(node.operand)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            return self.call(node, loc)
        self.error(node, "this is not part of the equation language",
                   "names, v[t-k], numbers, + - * / ** @, and function calls")

    def subscript(self, node: ast.Subscript, loc: Loc):
        if isinstance(node.slice, ast.Slice):
            s = node.slice
            if s.step is not None or s.lower is None or s.upper is None:
                self.error(node.slice, "a slice needs both bounds and no step", "z[0:H]")
            return Call(SLICE, (self.expr(node.value),), loc, attrs=(self.size(s.lower), self.size(s.upper)))
        if not isinstance(node.value, ast.Name):
            self.error(node, "only a variable can be indexed by time", "v[t], v[t-1], v[t+1]")
        return Read(node.value.id, self.offset(node.slice), loc)

    def offset(self, node: ast.expr) -> int:
        if isinstance(node, ast.Name) and node.id == "t":
            return 0
        if (isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub))
                and isinstance(node.left, ast.Name) and node.left.id == "t"
                and isinstance(node.right, ast.Constant) and type(node.right.value) is int):
            return node.right.value if isinstance(node.op, ast.Add) else -node.right.value
        self.error(node, "bad time index", "t, t-k or t+k with a whole number k")

    def call(self, node: ast.Call, loc: Loc):
        f = node.func.id
        if node.keywords:
            self.error(node.keywords[0].value, f"{f}() takes no keyword arguments")
        args = tuple(self.expr(a) for a in node.args)
        fn = ew.FUNCTIONS.get(f) or self.functions.get(f)
        if fn is not None:
            if len(args) != len(fn.variables):
                self.error(node, f"{f}() takes {len(fn.variables)} argument(s), got {len(args)}",
                           f"{f}({', '.join(f'a{i}' for i in range(len(fn.variables)))})")
            return Call(EW, args, loc, f, fn)
        if f in CALLABLE:
            CALLABLE[f].check_arity(len(args), self.loc(node))
            return Call(CALLABLE[f], args, loc)
        self.error(node.func, f"unknown function `{f}`", "one of " + ", ".join(
            [*ew.FUNCTIONS, *self.functions, *CALLABLE]) + ", or a `def` above its use")

    # -- user functions ------------------------------------------------------
    def function(self, node: ast.FunctionDef):
        a = node.args
        if a.vararg or a.kwarg or a.kwonlyargs or a.defaults or a.posonlyargs or not a.args:
            self.error(node, "a model function takes plain positional arguments", "def f(z): return ...")
        if node.name in ew.BUILTINS or node.name in self.functions or node.name in CALLABLE:
            self.error(node, f"function `{node.name}` is already defined", "a new name")
        params = ew.arg_symbols(len(a.args))
        env = {arg.arg: p for arg, p in zip(a.args, params)}
        *body, last = node.body
        for stmt in body:
            if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)):
                if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
                    continue
                self.error(stmt, "a model function may only assign local names and return", "y = ...; return y")
            env[stmt.targets[0].id] = self.scalar(stmt.value, env)
        if not isinstance(last, ast.Return) or last.value is None:
            self.error(last, "a model function must end with `return <expression>`")
        self.functions[node.name] = sp.Lambda(params, self.scalar(last.value, env))

    def scalar(self, node: ast.expr, env: dict) -> sp.Expr:
        """A function body as a sympy expression of its (scalar) arguments."""
        if isinstance(node, ast.Name):
            if node.id not in env:
                self.error(node, f"unknown name `{node.id}` in a function body", "an argument or a local")
            return env[node.id]
        number = self.number(node)
        if number is not None:
            return sp.nsimplify(number)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            f = ew.OPERATORS[_BINOPS[type(node.op)]]
            return ew.compose(f, [self.scalar(node.left, env), self.scalar(node.right, env)])
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = self.scalar(node.operand, env)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            fn = ew.FUNCTIONS.get(node.func.id) or self.functions.get(node.func.id)
            if fn is None:
                self.error(node.func, f"unknown function `{node.func.id}`",
                           "an elementwise function: " + ", ".join([*ew.FUNCTIONS, *self.functions]))
            if len(node.args) != len(fn.variables):
                self.error(node, f"{node.func.id}() takes {len(fn.variables)} argument(s)")
            return ew.compose(fn, [self.scalar(x, env) for x in node.args])
        self.error(node, "not elementwise scalar math",
                   "numbers, arguments, + - * / **, and elementwise functions (no @ inside a def)")
