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

import unicodedata
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
            shown, col, end = _window(_visible(self.loc.text.rstrip()), self.loc.col, self.loc.end_col)
            lines.append("    " + shown)
            lines.append("    " + _pad(shown[:col - 1]).ljust(col - 1) + "^" * max(1, end - col))
        if self.expected:
            lines.append(f"  expected: {self.expected}")
        return "\n".join(lines)


#: the most characters of a source line a diagnostic quotes
WIDTH = 100


def _window(text: str, col: int, end: int) -> tuple[str, int, int]:
    """At most WIDTH characters of a long line, from a little before `col`, with `...` where cut."""
    if len(text) <= WIDTH:
        return text, col, end
    start = max(0, min(col - 21, len(text) - WIDTH))
    head = "..." if start else ""
    tail = "..." if start + WIDTH < len(text) else ""
    return (head + text[start:start + WIDTH] + tail, col - start + len(head),
            min(end - start, WIDTH + 1) + len(head))


def _visible(text: str) -> str:
    """The line as a terminal can show it: one visible character for each
    tab, control or separator character (\\x0c, \\u2028), so columns still match."""
    return "".join(c if c.isprintable() else " " if c == "\t" else "\ufffd" for c in text)


def _pad(prefix: str) -> str:
    """Spaces as wide on a terminal as `prefix`: wide (CJK) characters take two, combining ones none."""
    return "".join("" if unicodedata.combining(c) else
                   "  " if unicodedata.east_asian_width(c) in "WF" else " " for c in prefix)


class InputError(UnfoldError, ValueError):
    """An array of the wrong name, shape, dtype or layout."""
