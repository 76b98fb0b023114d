"""Random recurrences as `.rnn` text: a hypothesis strategy for property tests.

    from hypothesis import given
    from randrec import random_model

    @given(random_model())
    def test_something(case):
        text, tau, batch = case
        rec = uf.parse(text)            # always a valid model

`random_model(max_states=3, max_delay=3, backward=True, max_depth=3)` draws
(text, tau, batch): a model of small dims (N and M, 1 to 3 units each) with

- inputs `x[t]` (sometimes also `u[t]`, sometimes read at t-1) and a target `y`;
- 1 to `max_states` forward states read with delays 1..`max_delay`, initial
  values 0, a number or a param; sometimes a backward state `g` (reading
  `g[t+k]` and inputs), which forward equations read ahead (`g[t+1]`) and the
  loss reads at `[t]`;
- intermediates `m0, m1, ...` read at `[t]` by later equations;
- random expression trees: `P @ e` (a fresh param per matmul), `+ - *`,
  biases, scalar params, `tanh sigmoid sin softplus`, a user-defined `def`
  (one- or two-argument), `concat(a, b)[lo:hi]`, and `sum`/`mean` times a vector;
- a loss `sum_t`, `mean_t` or `last_t` of `mse`, `softmax_cross_entropy`,
  `sum(e * e)` or `mean(tanh(e))`;
- with `pieces=True`, also the language pieces of issue 13: `max`, `min`,
  `clip`, `softmax`, `log_softmax`, a `param(1)` broadcast over a vector,
  the step index `t` as a value and `dropout` (of a state's whole right
  side, with probability 1/2, or anywhere as a piece); off by default, so
  the examples other tests draw stay the ones they always drew.

Everything is smooth (no abs, relu, log, sqrt or division by an input; the
kinks of max, min and clip are met with probability 0), so central finite
differences are accurate, and all models are valid by
construction: a model that does not parse is a bug in the parser or here.
Equations are written in a random order (the checker sorts them).
tau >= max delay is not guaranteed; `tau` is 2..5 and `batch` 1..3.
"""
from __future__ import annotations

import re

from hypothesis import strategies as st

FUNCTIONS = ("tanh", "sigmoid", "sin", "softplus")
#: user-defined elementwise functions: (name, arity, source)
USER_FUNCTIONS = (
    ("squash", 1, "def squash(z):\n    return z / (1 + z * z)"),
    ("swish", 1, "def swish(z):\n    s = sigmoid(z)\n    return z * s"),
    ("blend", 2, "def blend(a, b):\n    return a * tanh(b) + 0.5 * b ** 2"),
)


class _Model:
    """The pieces of one random model, drawn one decision at a time."""

    def __init__(self, draw, max_states, max_delay, backward, max_depth, pieces=False):
        self.draw, self.max_delay, self.max_depth, self.pieces = draw, max_delay, max_depth, pieces
        self.dims = {"N": draw(st.integers(1, 3)), "M": draw(st.integers(1, 3))}
        self.inputs = {"x": "N"}
        if draw(st.booleans()):
            self.inputs["u"] = "M"
        self.decls: list[str] = []        # param lines, in creation order
        self.used_functions: set[str] = set()
        self.states = {f"s{i}": draw(st.sampled_from(["N", "M"]))
                       for i in range(draw(st.integers(1, max_states)))}
        self.backward = draw(st.sampled_from(["N", "M"])) if backward and draw(st.booleans()) else None
        self.inters = {f"m{i}": draw(st.sampled_from(["N", "M"])) for i in range(draw(st.integers(0, 2)))}
        self.now: dict[str, str] = {}     # defined earlier in step order: readable at [t]

    # -- names -----------------------------------------------------------------
    def param(self, *dims, std=0.5) -> str:
        name = f"p{len(self.decls)}"
        self.decls.append(f"{name} = param({', '.join(dims)}{', ' if dims else ''}init=normal({std}))")
        return name

    def leaf(self, dim: str, backward: bool) -> str:
        d = self.draw
        options = [f"{x}[t]" for x, xd in self.inputs.items() if xd == dim]
        if backward:
            if self.backward == dim:
                options.append(f"g[t+{d(st.integers(1, 2))}]")
        else:
            options += [f"{x}[t-1]" for x, xd in self.inputs.items() if xd == dim]
            options += [f"{s}[t-{d(st.integers(1, self.max_delay))}]" for s, sd in self.states.items() if sd == dim]
            options += [f"{v}[t]" for v, vd in self.now.items() if vd == dim]
            if self.backward == dim:
                options.append("g[t+1]")
        if not options:
            return f"({self.param(dim, 'N', std=0.7)} @ x[t])"
        return d(st.sampled_from(options))

    # -- expressions -----------------------------------------------------------
    def expr(self, dim: str, depth: int, backward: bool = False) -> str:
        d = self.draw
        if depth <= 0 or d(st.integers(0, 4)) == 0:
            return self.leaf(dim, backward)
        kind = d(st.sampled_from(["matmul", "matmul", "arith", "fn", "user", "bias", "scale",
                                  "slice", "reduce"] + (["piece", "piece"] if self.pieces else [])))
        sub = lambda dd=dim: self.expr(dd, depth - 1, backward)  # noqa: E731
        if kind == "piece":
            return self.piece(dim, sub)
        if kind == "matmul":
            din = d(st.sampled_from(["N", "M"]))
            return f"({self.param(dim, din)} @ {sub(din)})"
        if kind == "arith":
            return f"({sub()} {d(st.sampled_from(['+', '-', '*']))} {sub()})"
        if kind == "fn":
            return f"{d(st.sampled_from(FUNCTIONS))}({sub()})"
        if kind == "user":
            name, arity, _ = d(st.sampled_from(USER_FUNCTIONS))
            self.used_functions.add(name)
            return f"{name}({', '.join(sub() for _ in range(arity))})"
        if kind == "bias":
            return f"({sub()} + {self.param(dim)})"
        if kind == "scale":
            k = self.param() if d(st.booleans()) else d(st.sampled_from(["0.5", "2", "-1.5"]))
            return f"({k} * {sub()})"
        if kind == "slice":
            other = d(st.sampled_from(["N", "M"]))
            lo = d(st.integers(0, self.dims[other]))
            return f"concat({sub()}, {sub(other)})[{lo}:{lo + self.dims[dim]}]"
        return f"({d(st.sampled_from(['sum', 'mean']))}({sub()}) * {sub()})"

    def piece(self, dim: str, sub) -> str:
        """One of the language pieces of issue 13 (`pieces=True`)."""
        kind = self.draw(st.sampled_from(["max", "min", "clip", "softmax", "log_softmax", "broadcast", "t",
                                          "dropout"]))
        if kind in ("max", "min"):
            return f"{kind}({sub()}, {sub() if self.draw(st.booleans()) else '0.25'})"
        if kind == "clip":
            return f"clip({sub()}, -0.5, {self.param('1') if self.draw(st.booleans()) else '0.75'})"
        if kind in ("softmax", "log_softmax"):
            return f"{kind}({sub()})"
        if kind == "broadcast":
            return f"({self.param('1')} * {sub()})"
        if kind == "dropout":
            return f"dropout({sub()}, 0.4{', variational=True' if self.draw(st.booleans()) else ''})"
        return f"({sub()} + 0.25 * t)"

    def state_rhs(self, name: str, dim: str) -> str:
        body = self.expr(dim, self.max_depth)
        if self.pieces and self.draw(st.booleans()):   # dropout: on in runs given a seed
            body = f"dropout({body}, 0.3{', variational=True' if self.draw(st.booleans()) else ''})"
        form = self.draw(st.sampled_from(["tanh", "tanh", "leaky", "plain"]))
        if form == "tanh":
            return f"tanh({body})"
        if form == "leaky":
            return f"0.5 * {name}[t-1] + 0.5 * tanh({body})"
        return body

    def state_init(self, name: str, dim: str) -> str:
        kind = self.draw(st.sampled_from(["0", "number", "param"]))
        if kind == "param":
            return self.param(dim)
        return "0" if kind == "0" else "0.25"

    # -- the model ---------------------------------------------------------------
    def text(self) -> str:
        d = self.draw
        lines = []
        if self.backward:
            lines.append(f"g[t] = tanh({self.expr(self.backward, self.max_depth, backward=True)})")
        order = d(st.permutations(list(self.states) + list(self.inters)))
        for name in order:   # step order: later equations read earlier ones at [t]
            dim = self.states.get(name) or self.inters[name]
            rhs = self.state_rhs(name, dim) if name in self.states else self.expr(dim, self.max_depth)
            lines.append(f"{name}[t] = {rhs}")
            self.now[name] = dim
        if self.backward:
            self.now["g"] = self.backward
        loss = self.loss()
        inits = {s: self.state_init(s, sd) for s, sd in self.states.items()}
        head = [f"{k} = dim({v})" for k, v in self.dims.items()]
        head += [f"{x} = input({xd})" for x, xd in self.inputs.items()]
        head.append("y = target(N)")
        head += [src for name, _, src in USER_FUNCTIONS if name in self.used_functions]
        head += self.decls
        head += [f"{s} = state({sd}, init={inits[s]})" for s, sd in self.states.items()]
        if self.backward:
            head.append(f'g = state({self.backward}, init=0, direction="backward")')
        lines = d(st.permutations(lines))   # the file's order does not matter
        return "\n".join(head + list(lines) + [loss]) + "\n"

    def loss(self) -> str:
        d = self.draw
        e = self.expr("N", 2)
        term = d(st.sampled_from([f"mse({e}, y[t])", f"softmax_cross_entropy({e}, y[t])",
                                  f"sum({e} * {e})", f"mean(tanh({e}))"]))
        return f"loss = {d(st.sampled_from(['sum_t', 'mean_t', 'last_t']))}({term})"


#: names a user may well write that the compiler's own ids, buffers and
#: generated code also use: every one must be harmless
HOSTILE = ("c_h", "h_m1", "x_m1", "s0_m1", "s0_p1", "p_p0", "S_s0", "V_m0", "in_x", "P_x", "M_x", "F_s0",
           "A_loss", "W_M_x", "dS_s0", "dR_p_p0", "dp_p0", "g_s0", "G_s0", "z", "z_1", "running", "mask", "lw",
           "loss_1", "np", "math", "numba", "cuda", "dt", "DT", "T", "B", "S", "b", "j", "k", "q", "trunc",
           "forward", "backward", "ARGS", "range", "len", "min", "float", "i", "g_1", "a0", "a1", "_x", "x__",
           "v", "v_1", "d", "e", "E", "I", "pi", "N_1", "step", "sign")
#: the generator's own names, which `hostile` may rename
_RENAMEABLE = re.compile(r"\b(x|u|y|g|s[0-9]|m[0-9]|p[0-9]+)\b")


def _rename(draw, text: str) -> str:
    """The same model with some of its symbols renamed to hostile names."""
    names = sorted(set(_RENAMEABLE.findall(text)))
    pool = list(HOSTILE)
    mapping = {}
    for name in names:
        if draw(st.booleans()):
            new = draw(st.sampled_from(pool))
            pool.remove(new)
            mapping[name] = new
    fix = lambda part: _RENAMEABLE.sub(lambda m: mapping.get(m.group(1), m.group(1)), part)  # noqa: E731
    return "\n".join(fix(line) if not line.startswith(("def ", "    ")) else line
                     for line in text.splitlines()) + "\n"


@st.composite
def random_model(draw, max_states: int = 3, max_delay: int = 3, backward: bool = True,
                 max_depth: int = 3, hostile: bool = False, pieces: bool = False):
    """A strategy of (text, tau, batch): a random valid `.rnn` model and run sizes;
    `hostile`: some symbols renamed to names the compiler itself uses (`HOSTILE`);
    `pieces`: expressions may use max, min, clip, softmax, param(1) and `t`."""
    text = _Model(draw, max_states, max_delay, backward, max_depth, pieces).text()
    if hostile:
        text = _rename(draw, text)
    return text, draw(st.integers(2, 5)), draw(st.integers(1, 3))
