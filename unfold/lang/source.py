"""Model text before parsing: decoding, lines, columns, and bounded depth.

    text = decode(path.read_bytes(), "m.rnn")   # strict UTF-8, or a ModelError at the bad byte
    src = Source(text, "m.rnn")
    tree = src.parse()                           # ast.Module, every expression at most MAX_DEPTH deep
    src.loc(node)                                # a Loc in characters, on the line Python counted

Python counts lines at "\\r\\n", "\\r" and "\\n" only, and `ast` gives columns
in UTF-8 bytes; `str.splitlines` also splits at "\\x0c", "\\x1c" or "\\u2028",
so it would quote the wrong line, and a byte column points past a non-ASCII
name.  Every later stage (checker, sympy, the compiler's passes) walks
expressions recursively, so the parser refuses nesting deeper than
`MAX_DEPTH` here, once, by an iterative walk; Python's own parser gives up
(RecursionError, MemoryError) somewhere past 1,000 levels, and that is a
`ModelError` at the longest statement too.
"""
from __future__ import annotations

import ast
import codecs
import io
import re
import tokenize
import warnings

from .errors import Loc, ModelError

#: the deepest expression a model may write: a sum of at most this many terms,
#: or this many nested calls or parentheses
MAX_DEPTH = 100
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_BOMS = {codecs.BOM_UTF32_LE: "UTF-32", codecs.BOM_UTF32_BE: "UTF-32",
         codecs.BOM_UTF16_LE: "UTF-16", codecs.BOM_UTF16_BE: "UTF-16"}


def _utf8(encoding: str) -> str:
    return f"a UTF-8 text file (convert it, e.g. `iconv -f {encoding} -t UTF-8 old.rnn > new.rnn`)"


def decode(data: bytes, file: str) -> str:
    """The text of a model file: UTF-8 (a BOM allowed), else a ModelError at the first bad byte."""
    for bom, name in _BOMS.items():  # UTF-32 first: its LE BOM starts with UTF-16's
        if data.startswith(bom):
            raise ModelError(f"the file is {name}, not UTF-8", Loc(file, 1, 1, 2), _utf8(name))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        head = data[:e.start]
        line = head.count(b"\n") + 1
        start = head.rfind(b"\n") + 1
        end = data.find(b"\n", e.start)
        text = data[start:end if end >= 0 else len(data)].decode("utf-8", "replace")
        col = len(data[start:e.start].decode("utf-8", "replace")) + 1
        raise ModelError(f"invalid UTF-8: byte 0x{data[e.start]:02x} cannot start or continue a character",
                         Loc(file, line, col, col + 1, text), _utf8("LATIN1")) from None


class Source:
    """A model's text, its lines as Python counts them, and locations in characters."""

    def __init__(self, text: str, file: str):
        self.text, self.file = text, file
        self.lines = _LINE_BREAK.split(text)

    def line(self, n: int) -> str:
        return self.lines[n - 1] if 0 < n <= len(self.lines) else ""

    def at(self, line: int, col: int, end_col: int | None = None) -> Loc:
        """A Loc from 1-based character columns (end exclusive, default one character)."""
        return Loc(self.file, line, col, max(end_col or 0, col + 1), self.line(line))

    def loc(self, node: ast.AST) -> Loc:
        """The span of an ast node: its columns converted from UTF-8 bytes to characters."""
        src = self.line(node.lineno)
        col = _chars(src, node.col_offset)
        one_line = getattr(node, "end_lineno", node.lineno) == node.lineno
        end = _chars(src, node.end_col_offset) if one_line and node.end_col_offset else len(src)
        return self.at(node.lineno, col + 1, end + 1)

    # -- parsing ---------------------------------------------------------------
    def parse(self) -> ast.Module:
        """`ast.parse`, every failure a ModelError with a location, depth bounded."""
        self._check_characters()
        try:
            with warnings.catch_warnings():  # "invalid escape sequence" and the like: not ours to show
                warnings.simplefilter("ignore")
                tree = ast.parse(self.text, filename=self.file)
        except SyntaxError as e:
            raise self._syntax_error(e) from None
        except (RecursionError, MemoryError):  # Python's parser has a depth limit of its own
            line = self._longest_statement()
            raise ModelError("this statement is nested too deeply for Python's parser",
                             self.at(line, 1, len(self.line(line)) + 1), _DEPTH_HELP) from None
        self._check_depth(tree)
        return tree

    def _check_characters(self):
        """NUL and lone surrogates: `ast.parse` rejects them with no location."""
        bad = re.search(r"[\x00\ud800-\udfff]", self.text)
        if bad:
            breaks = list(_LINE_BREAK.finditer(self.text, 0, bad.start()))
            start = breaks[-1].end() if breaks else 0
            what = "a NUL character" if bad.group() == "\x00" else \
                f"a lone surrogate U+{ord(bad.group()):04X} (half of a UTF-16 pair, not a character)"
            utf16 = self.text.count("\x00") > len(self.text) // 4  # every other byte: UTF-16 without a BOM
            raise ModelError(f"the text contains {what}" + (" (is the file UTF-16?)" if utf16 else ""),
                             self.at(len(breaks) + 1, bad.start() - start + 1),
                             _utf8("UTF-16") if utf16 else "text made of characters")

    def _syntax_error(self, e: SyntaxError) -> ModelError:
        line = e.lineno or 1
        col = max(e.offset or 1, 1)  # SyntaxError columns are characters already
        end = e.end_offset if (e.end_lineno or line) == line and (e.end_offset or 0) > col else col + 1
        if "integer string conversion" in e.msg:  # Python's advice (sys.set_int_max_str_digits) is not ours
            return ModelError("a number with more than 4300 digits", self.at(line, col, end), "a finite number")
        message = e.msg if e.msg.startswith("invalid syntax") else f"invalid syntax: {e.msg}"
        return ModelError(message, self.at(line, col, end), "Python expression syntax, one statement per line")

    def _longest_statement(self) -> int:
        """The line on which the statement with the most tokens starts (tokenize is iterative)."""
        best, count, start = (0, 1), 0, 1
        try:
            for tok in tokenize.generate_tokens(io.StringIO(self.text).readline):
                if tok.type in _BLANK:
                    continue
                if count == 0:
                    start = tok.start[0]
                count += 1
                if tok.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
                    best, count = max(best, (count, start)), 0
        except (tokenize.TokenError, SyntaxError):
            best = max(best, (count, start))
        return best[1]

    def _check_depth(self, tree: ast.Module):
        """Refuse an expression nested deeper than MAX_DEPTH, by an iterative walk;
        the error points at the outermost expression, the one to split."""
        stack = [(tree, 0, None)]
        while stack:
            node, depth, root = stack.pop()
            if isinstance(node, ast.expr):
                depth, root = depth + 1, root or node
                if depth > MAX_DEPTH:
                    raise ModelError(f"this expression is nested more than {MAX_DEPTH} deep", self.loc(root),
                                     _DEPTH_HELP)
            stack.extend((child, depth, root) for child in ast.iter_child_nodes(node))


_DEPTH_HELP = (f"at most {MAX_DEPTH} levels of nesting (a sum of at most {MAX_DEPTH} terms); "
               "split a long expression with intermediates: a[t] = ...; b[t] = a[t] + ...")


_BLANK = (tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT)


def _chars(line: str, byte_offset: int) -> int:
    """The number of characters in the first `byte_offset` UTF-8 bytes of `line`."""
    return len(line.encode("utf-8", "surrogatepass")[:byte_offset].decode("utf-8", "replace"))
