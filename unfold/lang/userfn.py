"""A model's own elementwise functions: a `def` read as sympy math.

    def softsign(z):
        return z / (1 + abs(z))          # -> Lambda(a0, a0/(Abs(a0) + 1))

A body may assign local names and must end with `return <expression>`; it
may use numbers, its arguments and locals, `+ - * / **`, and elementwise
functions (built in or defined above).  Numbers written with no argument in
them (`2 ** 0.5`, `log(2)`) are folded in float64 as the kernels would
compute them, so `10 ** 10 ** 10` is an overflow at once rather than a
giant integer.  What comes out must be real math a kernel can run
(`mathcheck.problem`) and, with every user function it calls expanded, at
most `mathcheck.MAX_HEIGHT` deep and `MAX_SIZE` nodes: sympy's derivatives
and the code printers recurse over it.
"""
from __future__ import annotations

import ast

import sympy as sp

from . import elementwise as ew
from . import mathcheck as mc
from .ops import CALLABLE

_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow"}
_PLAIN = "def f(z): return ...  (plain positional arguments, no decorators or annotations)"
_SCALAR_HELP = "numbers, arguments, + - * / **, and elementwise functions (no @ inside a def)"


def define(parser, node: ast.FunctionDef) -> sp.Lambda:
    """The sympy Lambda of a `def`, checked; `parser` gives numbers, errors and the functions so far."""
    _check_signature(parser, node)
    params = ew.arg_symbols(len(node.args.args))
    env = {arg.arg: p for arg, p in zip(node.args.args, params)}
    *body, last = node.body
    for stmt in body:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
            continue  # a docstring
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)):
            parser.error(stmt, "a model function may only assign local names and return", "y = ...; return y")
        env[stmt.targets[0].id] = checked(parser, stmt.value, _Scalar(parser, env).convert(stmt.value))
    if not isinstance(last, ast.Return) or last.value is None:
        parser.error(last, "a model function must end with `return <expression>`", "return z / (1 + abs(z))")
    return sp.Lambda(params, checked(parser, last.value, _Scalar(parser, env).convert(last.value)))


def _check_signature(parser, node: ast.FunctionDef):
    a = node.args
    if node.decorator_list:
        parser.error(node.decorator_list[0], "a model function cannot have decorators", _PLAIN)
    annotated = [x.annotation for x in a.args if x.annotation] + ([node.returns] if node.returns else [])
    if annotated:
        parser.error(annotated[0], "a model function has no type annotations", _PLAIN)
    if node.type_comment or getattr(node, "type_params", None):
        parser.error(node, "a model function has no type comments or type parameters", _PLAIN)
    if a.vararg or a.kwarg or a.kwonlyargs or a.defaults or a.posonlyargs or not a.args:
        parser.error(node, "a model function takes plain positional arguments", _PLAIN)
    if node.name in ew.BUILTINS or node.name in parser.functions or node.name in CALLABLE:
        parser.error(node, f"function `{node.name}` is already defined", "a new name")


def checked(parser, node: ast.expr, expr: sp.Expr) -> sp.Expr:
    """`expr` (the math of `node`) if it is real, bounded math; else a ModelError at `node`."""
    why = mc.problem(expr)
    if why:
        parser.error(node, f"this expression {why}", mc.REAL_HELP)
    too_big = mc.too_big(expr)
    if too_big:
        parser.error(node, f"this function {too_big}", mc.BOUNDS_HELP)
    return expr


class _Scalar:
    """A body's expression as sympy, with constant parts folded in float64."""

    def __init__(self, parser, env: dict):
        self.parser, self.env = parser, env

    def convert(self, node: ast.expr) -> sp.Expr:
        if isinstance(node, ast.Name):
            if node.id not in self.env:
                self.parser.error(node, f"unknown name `{node.id}` in a function body", "an argument or a local")
            return self.env[node.id]
        number = self.parser.number(node)
        if number is not None:
            return ew.exact(number)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            fn = ew.OPERATORS[_BINOPS[type(node.op)]]
            return self.apply(node, fn, [self.convert(node.left), self.convert(node.right)])
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = self.convert(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            return self.call(node)
        self.parser.not_math(node, _SCALAR_HELP)

    def call(self, node: ast.Call) -> sp.Expr:
        name = node.func.id
        fn = ew.FUNCTIONS.get(name) or self.parser.functions.get(name)
        if fn is None:
            self.parser.error(node.func, f"unknown function `{name}`",
                              "an elementwise function: " + ", ".join([*ew.FUNCTIONS, *self.parser.functions]))
        if len(node.args) != len(fn.variables):
            self.parser.error(node, f"{name}() takes {len(fn.variables)} argument(s), got {len(node.args)}",
                              f"{name}({', '.join(f'a{i}' for i in range(len(fn.variables)))})")
        args = [self.convert(x) for x in node.args]
        entry = ew.ENTRIES.get(name) if name in ew.FUNCTIONS else None
        refused = entry and entry.literals and entry.literals({i: float(a) for i, a in enumerate(args)
                                                               if a.is_number})
        if refused:
            self.parser.error(node, f"`{_text(node)}`: {refused[0]}", refused[1])
        return self.apply(node, fn, args)

    def apply(self, node: ast.expr, fn: sp.Lambda, args: list[sp.Expr]) -> sp.Expr:
        try:
            if all(a.is_number for a in args):  # a constant: fold it in float64
                return ew.exact(ew.fold(fn, [float(a) for a in args]))
            return mc.compose_bounded(fn, args)
        except mc.TooLarge as e:
            self.parser.error(node, f"this expression {e}", mc.BOUNDS_HELP)
        except (ValueError, TypeError) as e:
            self.parser.error(node, f"`{_text(node)}` {e}", "a finite real number")


def _text(node: ast.expr, width: int = 60) -> str:
    text = ast.unparse(node)
    return text if len(text) <= width else text[:width - 3] + "..."
