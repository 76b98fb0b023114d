"""Errors a user can cause, each pointing at the text that caused it.

A `ModelError` carries a `Loc` (file, line, column, end column) and prints
like a compiler diagnostic:

    elman.rnn:7:13: error: shape mismatch in `W @ h[t-1]`
        h[t] = tanh(W @ h[t-1] + U @ x[t] + b)
                    ^^^^^^^^^^
      expected: W's columns (D=8) to equal the length of h[t-1] (H=16)

`InputError` is for arrays handed to an evaluator or a compiled kernel.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Loc:
    """A span of one source line; columns are 1-based, `end_col` exclusive."""
    file: str
    line: int
    col: int
    end_col: int
    text: str = ""  # the whole source line, for the caret display

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class UnfoldError(Exception):
    """Base of every error unfold raises on purpose (the CLI exits 2)."""


class ModelError(UnfoldError):
    """A mistake in a model: unknown name, bad shape, algebraic loop, ..."""

    def __init__(self, message: str, loc: Loc | None = None, expected: str | None = None):
        self.message, self.loc, self.expected = message, loc, expected
        super().__init__(self.render())

    def render(self) -> str:
        head = f"{self.loc}: error: {self.message}" if self.loc else f"error: {self.message}"
        lines = [head]
        if self.loc and self.loc.text:
            lines.append("    " + self.loc.text.rstrip())
            width = max(1, self.loc.end_col - self.loc.col)
            lines.append("    " + " " * (self.loc.col - 1) + "^" * width)
        if self.expected:
            lines.append(f"  expected: {self.expected}")
        return "\n".join(lines)


class InputError(UnfoldError, ValueError):
    """An array of the wrong name, shape, dtype or layout."""
