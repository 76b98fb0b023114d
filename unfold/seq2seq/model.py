"""An encoder–decoder model (Deep Learning §10.4, Fig. 10.12): two recurrences
over two sequences of different lengths, joined by a context.

One `.rnn` file holds both, each in a `with` block; what sits outside the
blocks (dims, consts, functions, params both read) is shared:

    H = dim(16)
    with encoder:
        x = input(D)
        e = state(H, init=0)
        e[t] = tanh(We @ e[t-1] + Ue @ x[t])
    with decoder(h=e, c=e):          # the context: the encoder's final e
        c = input(H)                 # read at every step, as `c` (no [t])
        h = state(H, init=0)         # its initial value is replaced by the context
        h[t] = tanh(Wd @ h[t-1] + Vd @ y[t-1] + Cd @ c)
        ...
        loss = mean_t(softmax_cross_entropy(z[t], y[t]))

`decoder(name=state, ...)` links a decoder symbol to an encoder state: a
decoder *state* starts from the encoder state's final value (instead of its
`init`), a decoder *input* read without `[t]` receives it at every step.
The final value is each sequence's own last step when lengths are given.

Each block, with the shared lines, is parsed and checked by the ordinary
language (`lang.dsl.parse`): the text handed on keeps every line where it
was and the block's lines dedented, so an error in a block is reported at
the file's own line and column.  Nothing is evaluated.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..lang.dsl import parse, read_model
from ..lang.errors import Loc, ModelError
from ..lang.ir import Role
from ..lang.recurrence import Recurrence
from ..lang.source import Source

PARTS = ("encoder", "decoder")


@dataclass
class EncoderDecoder:
    """Two checked recurrences and the links from encoder states to decoder symbols."""
    name: str
    file: str
    encoder: Recurrence
    decoder: Recurrence
    links: dict[str, str]                    # decoder symbol -> encoder state
    shared: frozenset = field(default_factory=frozenset)   # params both parts read

    @property
    def parts(self) -> dict[str, Recurrence]:
        return {"encoder": self.encoder, "decoder": self.decoder}

    def params(self) -> dict:
        """name -> Symbol of every param, once (a shared one is the encoder's)."""
        return {s.name: s for rec in (self.decoder, self.encoder) for s in rec.params}

    def linked_inputs(self) -> set[str]:
        return {d for d in self.links if self.decoder.symbols[d].role is Role.INPUT}

    def init_params(self, seed: int = 0, dtype=np.float64) -> dict[str, np.ndarray]:
        """Both parts' params from their initializers (a shared param drawn once, by the encoder)."""
        out = self.decoder.init_params(seed=seed + 1, dtype=dtype)
        out.update(self.encoder.init_params(seed=seed, dtype=dtype))
        return out

    def bind(self, **dims: int) -> "EncoderDecoder":
        """Both parts with some dims changed (each part takes the ones it declares)."""
        unknown = sorted(set(dims) - set(self.encoder.dims) - set(self.decoder.dims))
        if unknown:
            raise ModelError(f"model {self.name} has no dim {unknown[0]}", expected="one of its dims")
        parts = {p: rec.bind(**{k: v for k, v in dims.items() if k in rec.dim_decls}) for p, rec in self.parts.items()}
        return EncoderDecoder(self.name, self.file, parts["encoder"], parts["decoder"], self.links, self.shared)

    @property
    def dims(self) -> dict:
        return {**self.encoder.dims, **self.decoder.dims}

    def listing(self) -> str:
        links = ", ".join(f"{d} <- final {e}" for d, e in self.links.items())
        return (f"encoder–decoder {self.name}  ({self.file})\ncontext: {links}\n"
                + "".join(f"\n[{p}]\n{rec.listing()}\n" for p, rec in self.parts.items()))

    def __str__(self) -> str:
        return self.listing()


def load(path) -> EncoderDecoder:
    return parse_encoder_decoder(read_model(path), str(path), Path(path).stem)


def parse_encoder_decoder(text: str, file: str = "<model>", name: str | None = None) -> EncoderDecoder:
    src = Source(text, file)
    shared, blocks = [], {}
    for stmt in src.parse().body:
        if isinstance(stmt, ast.With):
            part, links = _header(src, stmt)
            if part in blocks:
                raise ModelError(f"a second `with {part}` block", src.loc(stmt), "one encoder and one decoder block")
            blocks[part] = (stmt, links)
        else:
            shared.append(stmt)
    if list(blocks) != list(PARTS):
        raise ModelError("an encoder–decoder model needs a `with encoder:` block, then a `with decoder(...):`",
                         Loc(file, 1, 1, 2, src.line(1)), "with encoder: ... then with decoder(h=e): ...")
    recs = {p: _part(src, shared, blocks[p][0], f"{name or Path(file).stem}.{p}") for p in PARTS}
    links, params = blocks["decoder"][1], frozenset(_shared_params(shared))
    _check_links(recs, links, params, src.loc(blocks["decoder"][0].items[0].context_expr))
    return EncoderDecoder(name or Path(file).stem, file, recs["encoder"], recs["decoder"], links, params)


def connect(encoder: Recurrence, decoder: Recurrence, name: str = "encoder_decoder", shared=(),
            **links: str) -> EncoderDecoder:
    """An encoder–decoder from two recurrences (written as text or with the Python
    builder): `connect(enc, dec, h="e", c="e")`; `shared` names params both read."""
    shared = frozenset(shared)
    for k in shared:
        if encoder.symbols.get(k) is None or decoder.symbols.get(k) is None or \
                encoder.symbols[k].shape != decoder.symbols[k].shape:
            raise ModelError(f"shared param `{k}` is not a param of one shape in both parts",
                             expected="a param both parts declare alike")
    _check_links({"encoder": encoder, "decoder": decoder}, dict(links), shared, None)
    return EncoderDecoder(name, "<python>", encoder, decoder, dict(links), shared)


def _header(src: Source, stmt: ast.With) -> tuple[str, dict[str, str]]:
    """('encoder' | 'decoder', {decoder symbol: encoder state}) of a block's `with` line."""
    expected = "`with encoder:` or `with decoder(h=e, c=e):` (decoder symbol = encoder state)"
    item = stmt.items[0] if len(stmt.items) == 1 and stmt.items[0].optional_vars is None else None
    head = item.context_expr if item else stmt
    if isinstance(head, ast.Name) and head.id in PARTS:
        return head.id, {}
    if isinstance(head, ast.Call) and getattr(head.func, "id", None) == "decoder" and not head.args:
        links = {}
        for kw in head.keywords:
            if kw.arg is None or not isinstance(kw.value, ast.Name):
                raise ModelError("a context link is `decoder_symbol=encoder_state`", src.loc(kw.value), expected)
            links[kw.arg] = kw.value.id
        return "decoder", links
    raise ModelError("not an encoder or decoder block", src.loc(head), expected)


def _part(src: Source, shared: list, block: ast.With, name: str) -> Recurrence:
    """The block's recurrence: the shared lines and the block's own, dedented, each on its own line."""
    lines = [""] * len(src.lines)
    for stmt in shared:
        for n in range(stmt.lineno, stmt.end_lineno + 1):
            lines[n - 1] = src.line(n)
    indent = block.body[0].col_offset
    for stmt in block.body:
        for n in range(stmt.lineno, stmt.end_lineno + 1):
            line = src.line(n)
            lines[n - 1] = line[indent:] if line[:indent].isspace() else line.lstrip()
    try:
        return parse("\n".join(lines), file=src.file, name=name)
    except ModelError as e:  # put the column back where the file has it
        if e.loc is None or not block.lineno < e.loc.line <= block.end_lineno:
            raise
        loc = src.at(e.loc.line, e.loc.col + indent, e.loc.end_col + indent)
        raise ModelError(e.message, loc, e.expected) from None


def _check_links(recs: dict, links: dict[str, str], shared: frozenset, at: Loc | None):
    enc, dec = recs["encoder"], recs["decoder"]
    if not links:
        raise ModelError("the decoder reads no context", at, "decoder(h=e): a decoder state or input "
                         "that receives the encoder state e's final value")
    if enc.loss is not None:
        raise ModelError("the encoder has a loss; the decoder's loss is the model's", at,
                         "a `loss = ...` line in the decoder block only")
    clash = sorted(n for n, s in dec.symbols.items() if n in enc.symbols and n not in shared
                   and s.role is not Role.CONST)
    if clash:
        raise ModelError(f"`{clash[0]}` is declared in both the encoder and the decoder", at,
                         "distinct names in the two blocks; a param both read is declared once, outside them")
    for d, e in links.items():
        source, sink = enc.symbols.get(e), dec.symbols.get(d)
        if source is None or source.role is not Role.STATE:
            raise ModelError(f"`{e}` is not a state of the encoder", at, "decoder(symbol=encoder_state)")
        if sink is None or sink.role not in (Role.STATE, Role.INPUT) or \
                (sink.role is Role.INPUT and sink.timed):
            raise ModelError(f"`{d}` is not a state of the decoder nor an input it reads without [t]", at,
                             f"a decoder state, or `{d} = input(...)` read as `{d}` (one per sequence)")
        if sink.shape != source.shape:
            raise ModelError(f"the context `{e}` is {list(source.shape)} but `{d}` is {list(sink.shape)}",
                             at, "the same size on both sides of a link")


def _shared_params(shared: list) -> set[str]:
    """Names the shared lines declare as params (`W = param(...)`)."""
    return {s.targets[0].id for s in shared if isinstance(s, ast.Assign) and isinstance(s.targets[0], ast.Name)
            and isinstance(s.value, ast.Call) and getattr(s.value.func, "id", None) == "param"}
