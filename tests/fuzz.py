"""A fuzzer of the model language: every input gets a right answer or a clear error.

    python tests/fuzz.py --n 20000            # counts of outcomes by class; exit 1 on any failure
    python tests/fuzz.py --n 2000 --deep 0.1  # also compile a tenth of the valid models (numpy target)
    python tests/fuzz.py --case 1234          # print one case's text and its outcome

Cases, each a pure function of (seed, index):

- *grammar*: a random model from the grammar (`grammar_model`): dims, every
  kind of declaration and initializer, `def`s, expressions over every op and
  function, reads at random delays -- mostly valid, often not;
- *mutant*: a zoo model (examples/models) or a grammar model after one to
  three mutations (`MUTATIONS`): token deletion, duplication, swap and
  replacement, huge or broken literals, deep nesting, random unicode, line
  edits, other encodings and invalid bytes.

Each case runs in a worker process under a memory limit (RLIMIT_AS) and a
wall-clock limit the parent enforces by killing the worker, since a C-level
computation (a giant integer) ignores signals.  A case parses the bytes
(`uf.parse`); a valid model is also listed, initialized and run by the
reference interpreter (forward and BPTT) on random data, and with `--deep`
compiled to the numpy target and compared with the reference.  Outcomes:

    valid          parsed and ran (or was too large to run, "valid-large")
    error          a ModelError with a location (file:line:col, the line as
                   Python counts it, a column in characters) and an `expected:` line
    FAILURES:
    bad-error      a ModelError without one of those
    late-error     an UnfoldError after the checker accepted the model
    crash          any other exception (the class and where it was raised)
    wrong-number   the compiled program disagrees with the reference
    hang, memory   over the time limit; MemoryError or killed by the memory limit

`chooser`s make the generators drive-able by `random.Random` (this script)
and by hypothesis (`tests/test_fuzz.py`, which shrinks what it finds).
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import random
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: the zoo's one-recurrence models (an encoder–decoder, a CTC or a tree model is another front end's)
ZOO = {p.stem: p.read_text() for p in sorted((ROOT / "examples" / "models").glob("*.rnn"))
       if not re.search(r"^(with encoder|loss\s*=\s*ctc\s*\()|\[(left|right)\(n\)\]", p.read_text(), re.MULTILINE)}
FAILURES = ("bad-error", "late-error", "crash", "wrong-number", "hang", "memory")


class Rand:
    """A chooser over random.Random."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def choice(self, options):
        return self.rng.choice(list(options))

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def permutation(self, items: list) -> list:
        return self.rng.sample(items, len(items))


# -- the grammar ------------------------------------------------------------------

FUNCTIONS = ("tanh", "sigmoid", "relu", "exp", "log", "softplus", "abs", "sqrt", "sin", "cos", "erf")
SIZES = ("1", "2", "3", "4", "H", "D", "H+1", "2*H", "H//2", "H/2", "H-4", "0", "-1", "H*D", "2**60",
         "10**10**10", "1/0", "(-8)**(1/3)", "H**0.5", "sqrt(H)")
NUMBERS = ("0", "1", "2", "0.5", "-1", "1e-3", "3.5", "1e300", "1e400", "1/0", "0/0", "2**0.5", "10**10**10",
           "-0.0", "4.9e-324", "1" + "0" * 400, "True", "1j", "'a'", "None", "sqrt(-1)", "log(0)", "exp(1000)")
INITS = ("zeros()", "ones()", "constant({n})", "normal({n})", "uniform({n})", "orthogonal()",
         "orthogonal({n})", "xavier()", "spectral({n})", "uniform(1/sqrt(H))", "normal()", "spectral()",
         "glorot()", "uniform({n}, {n})", "zeros")


def grammar_model(c) -> str:
    """A random model text from the grammar; `c` a chooser."""
    lines = [f"H = dim({c.choice(('4', '4', '3', '1', '2**3', '0', '-2', '2**63', 'H'))})",
             f"D = dim({c.choice(('3', '3', '2', 'H', 'H//2', '1//0', '2.5'))})"]
    names = {"x": "input(D)", "y": "target(H)", "h": "state(H, init=0)"}
    for i in range(c.integer(0, 6)):
        kind = c.choice(("param", "param", "const", "input", "target", "state"))
        sizes = ", ".join(c.choice(SIZES) for _ in range(c.choice((0, 1, 1, 2, 2, 3))))
        opts = []
        if kind in ("param", "const") and c.chance(0.6):
            opts.append("init=" + c.choice(INITS).format(n=c.choice(NUMBERS)))
        if kind == "state":
            opts.append("init=" + c.choice(("0", "0.5", "-1", "p0", "x", "1e400", "zeros()")))
            if c.chance(0.3):
                opts.append("direction=" + c.choice(('"backward"', '"forward"', '"sideways"', "1")))
        names[f"{kind[0]}{i}"] = f"{kind}({', '.join(filter(None, [sizes, *opts]))})"
    lines += [f"{k} = {v}" for k, v in names.items()]
    if c.chance(0.3):
        lines.append(_grammar_def(c))
    readable = list(names) + ["f"]
    for target in ["h"] + [f"e{i}" for i in range(c.integer(0, 3))]:
        lines.append(f"{target}[t] = {_grammar_expr(c, readable, c.integer(1, 4))}")
    if c.chance(0.9):
        red = c.choice(("sum_t", "mean_t", "last_t", "max_t"))
        lines.append(f"loss = {red}({c.choice(('mse', 'softmax_cross_entropy', 'sum'))}("
                     f"{_grammar_expr(c, readable, 2)}, y[t]))")
    if c.chance(0.1):
        lines = c.permutation(lines)
    return "\n".join(lines) + "\n"


def _grammar_def(c) -> str:
    body = _scalar_expr(c, ["z"], c.integer(1, 4))
    return c.choice((f"def f(z):\n    return {body}", f"def f(z):\n    w = {body}\n    return w * z",
                     f"@dec\ndef f(z):\n    return {body}", f"def f(z: float) -> float:\n    return {body}",
                     f"def f(z, *a):\n    return {body}", f"def f(z):\n    return {body}\ndef g(z):\n    return f(f(z))"))


def _scalar_expr(c, names, depth) -> str:
    if depth <= 0 or c.chance(0.25):
        return c.choice(names + list(NUMBERS[:8]))
    sub = lambda: _scalar_expr(c, names, depth - 1)  # noqa: E731
    kind = c.choice(("op", "op", "fn", "neg"))
    if kind == "op":
        return f"({sub()} {c.choice(('+', '-', '*', '/', '**', '//', '@'))} {sub()})"
    if kind == "fn":
        return f"{c.choice(FUNCTIONS + ('where', 'tanhh'))}({sub()})"
    return f"-{sub()}"


def _grammar_leaf(c, readable) -> str:
    name = c.choice(readable)
    return c.choice((f"{name}[t]", f"{name}[t-1]", f"{name}[t-{c.integer(1, 3)}]", name, f"{name}[t+1]",
                     c.choice(NUMBERS[:6]), f"{name}[t][0:2]", f"{name}[t-1][0:H/2]"))


def _grammar_expr(c, readable, depth) -> str:
    if depth <= 0 or c.chance(0.2):
        return _grammar_leaf(c, readable)
    sub = lambda: _grammar_expr(c, readable, depth - 1)  # noqa: E731
    kind = c.choice(("matmul", "op", "op", "fn", "fn", "call", "slice", "where"))
    if kind == "matmul":
        return f"({c.choice(readable)} @ {sub()})"
    if kind == "op":
        return f"({sub()} {c.choice(('+', '-', '*', '/', '**', '%', '<'))} {sub()})"
    if kind == "fn":
        return f"{c.choice(FUNCTIONS)}({sub()})"
    if kind == "call":
        return f"{c.choice(('concat', 'sum', 'mean', 'mse', 'f', 'softmax_cross_entropy'))}({sub()}, {sub()})"
    if kind == "slice":
        return f"{sub()}[{c.choice(('0', '1', 'H', '-1'))}:{c.choice(('H', 'D', '2', 'H+1', 'H/3'))}]"
    return f"where({sub()}, {sub()}, {sub()})"


# -- mutations ----------------------------------------------------------------------

_TOKEN = re.compile(r"\s+|\d+\.?\d*(?:e[+-]?\d+)?|\w+|\*\*|//|.", re.S)
HUGE = ("2**63", "10**10**10", "1" + "0" * 400, "9" * 5000, "1e400", "-1e400", "1//0", "1/0", "(-8)**(1/3)",
        "0", "-1", "2**53", "2**53+1", "4.9e-324", "1.7976931348623157e308", "H/2", "H**H**H", "sqrt(-1)",
        "0**-1", "True", "None", "'s'", "1j", "...", "[1]", "(1, 2)", "t", "lambda: 0", "x if x else x")
UNICODE = ("\x00", "\x0c", "\x1c", "\x1d", "\x85", "\u2028", "\u2029", "\ufeff", "\ud800", "\udfff", "é", "ß",
           "中", "\U0001F600", "\u202e", "\t", "\r", "\r\n", "\v", "\u00a0", "\u0301", "\u0430", "\\", "#", "'",
           '"', "\n", "  ", "(", ")", "[", "]", ":", ",", "=", "@")


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _pick(c, tokens, pred=lambda tok: not tok.isspace()):
    spots = [i for i, tok in enumerate(tokens) if pred(tok)]
    return c.choice(spots) if spots else None


def mutate_tokens(c, text: str) -> str:
    toks = _tokens(text)
    i = _pick(c, toks)
    if i is None:
        return text + c.choice(UNICODE)
    op = c.choice(("delete", "duplicate", "swap", "replace"))
    if op == "delete":
        del toks[i]
    elif op == "duplicate":
        toks.insert(i, toks[i])
    elif op == "swap":
        j = _pick(c, toks)
        toks[i], toks[j] = toks[j], toks[i]
    else:
        toks[i] = c.choice([t for t in toks if not t.isspace()] + ["+", "*", "@", "(", ")", "[t]", "t", ","])
    return "".join(toks)


def mutate_literal(c, text: str) -> str:
    toks = _tokens(text)
    i = _pick(c, toks, lambda tok: tok[0].isdigit() or (c.chance(0.2) and tok[0].isalpha()))
    if i is None:
        return text
    toks[i] = c.choice(HUGE)
    return "".join(toks)


def mutate_nesting(c, text: str) -> str:
    lines = text.split("\n")
    spots = [i for i, line in enumerate(lines) if "=" in line and not line.startswith(("#", "def"))]
    if not spots:
        return text
    i = c.choice(spots)
    head, _, rhs = lines[i].partition("=")
    n = c.choice((5, 40, 99, 100, 101, 150, 199, 200, 201, 600, 2000, 20000, 100000))
    leaf = c.choice(re.findall(r"\b[A-Za-z_]\w*\b(?:\[t(?:-1)?\])?", rhs) or ["1"])
    rhs = c.choice((f"{'tanh(' * n}{rhs}{')' * n}", f"{'-' * n}({rhs})", f"{'(' * n}{rhs}{')' * n}",
                    f"{rhs}{f' + {leaf}' * n}", f"{rhs}{f' * {leaf}' * n}", f"{'sigmoid(' * n}{rhs}{')' * n}",
                    f"{rhs} + {' + '.join(['1'] * n)}", f"{'concat(' * n}{rhs}{', ' + leaf + ')' * n}"))
    lines[i] = head + "=" + rhs
    return "\n".join(lines)


def mutate_functions(c, text: str) -> str:
    """Deep or wide user functions: a chain of defs that each call the last twice."""
    k, fn = c.integer(1, 12), c.choice(("tanh", "sigmoid", "softplus", "where", "log", "sqrt", "abs"))
    inner = {"where": "where(z, z, -z)", "log": "log(z)", "sqrt": "sqrt(z)"}.get(fn, f"{fn}(z)")
    defs = [f"def q0(z):\n    return {inner}"]
    defs += [f"def q{i}(z):\n    return q{i - 1}(q{i - 1}(z)){c.choice(('', ' + q' + str(i - 1) + '(z)'))}"
             for i in range(1, k + 1)]
    lines = text.split("\n")
    spots = [i for i, line in enumerate(lines) if re.match(r"\w+\[t\] = ", line)]
    if spots:
        i = c.choice(spots)
        head, _, rhs = lines[i].partition(" = ")
        lines[i] = f"{head} = q{k}({rhs})"
    return "\n".join(defs + lines)


def mutate_unicode(c, text: str) -> str:
    for _ in range(c.integer(1, 3)):
        i = c.integer(0, len(text))
        text = text[:i] + c.choice(UNICODE) + text[i:]
    return text


def mutate_lines(c, text: str) -> str:
    lines = text.split("\n")
    i, j = c.integer(0, len(lines) - 1), c.integer(0, len(lines) - 1)
    op = c.choice(("delete", "duplicate", "swap", "truncate", "insert"))
    if op == "delete":
        del lines[i]
    elif op == "duplicate":
        lines.insert(j, lines[i])
    elif op == "swap":
        lines[i], lines[j] = lines[j], lines[i]
    elif op == "truncate":
        return text[:c.integer(0, len(text))]
    else:
        lines.insert(i, c.choice(("a[t] = 2 ** 3", "s = input()", "g = state(init=0)", "g = state(H, H, init=0)",
                                  "@property", "import os", "x = 1", "loss = sum_t(1)", "def f(z): return z",
                                  "Q = param(H, D, init=spectral(0.9))", "B = dim(2**40)", "P = param(B, B)",
                                  "h[t] = h[t-1]", "global x", "x[t] += 1", "if x: pass", "t = dim(3)")))
    return "\n".join(lines)


MUTATIONS = (mutate_tokens, mutate_tokens, mutate_literal, mutate_nesting, mutate_functions, mutate_unicode,
             mutate_lines, mutate_lines)


def encode(c, text: str) -> bytes:
    """The file's bytes: mostly UTF-8, sometimes another encoding or damaged."""
    how = c.choice(("utf-8",) * 40 + ("latin-1", "utf-16", "utf-32", "utf-8-sig", "cp1252", "bad-bytes"))
    if how == "bad-bytes":
        data = text.encode("utf-8", "surrogatepass")
        i = c.integer(0, len(data))
        return data[:i] + c.choice((b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xe2\x82", b"\x80", b"\xfe\xff")) + data[i:]
    return text.encode(how, "surrogatepass" if how.startswith("utf-8") else "replace")


def mutate_mildly(c, text: str) -> str:
    """A change that usually keeps the model valid: other small sizes and numbers."""
    toks = _tokens(text)
    for i in [i for i, tok in enumerate(toks) if tok[0].isdigit()]:
        if c.chance(0.3):
            whole = toks[i].isdigit()
            toks[i] = c.choice(("1", "2", "3", "5", "8") if whole else ("0.5", "0.9", "1.5", "2.0", "1e-3"))
    return "".join(toks)


def make_case(seed: int, index: int) -> bytes:
    """Case `index` of run `seed`: a mutant of a zoo or grammar model, or a grammar model."""
    c = Rand(random.Random(f"{seed}:{index}"))
    kind = c.choice(("zoo",) * 5 + ("grammar",) * 2 + ("grammar-mutant", "mild", "mild"))
    text = c.choice(list(ZOO.values())) if kind in ("zoo", "mild") else grammar_model(c)
    if kind == "mild":
        text = mutate_mildly(c, text)
    elif kind != "grammar":
        for _ in range(c.choice((1, 1, 1, 2, 3))):
            text = c.choice(MUTATIONS)(c, text)
    return encode(c, text)


# -- running one case -----------------------------------------------------------------

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def category(message: str) -> str:
    """A message with its particulars (names, numbers, shapes) blanked: the error's class."""
    m = re.sub(r"`[^`]*`", "`_`", message.splitlines()[0])
    m = re.sub(r"\[[^\]]*\]", "[..]", m)
    m = re.sub(r"(?<![\w-])\d[\d.,e+-]*|0x[0-9a-f]+|U\+[0-9A-F]+", "N", m)
    return m[:70]


def judge_error(e, data: bytes) -> tuple[str, str]:
    """("error", its class) for a ModelError that says what and where, else ("bad-error", why)."""
    loc, msg = e.loc, e.message
    if loc is None or not e.expected:
        return "bad-error", f"no {'location' if loc is None else 'expected: line'}: {msg}"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = None  # the error is about the bytes; its line is shown decoded with replacements
    if text is not None:
        lines = _LINE_BREAK.split(text)
        if not 1 <= loc.line <= len(lines) or loc.text != lines[loc.line - 1]:
            return "bad-error", f"quotes the wrong line {loc.line}: {msg}"
    if not (1 <= loc.col <= len(loc.text) + 1 and loc.end_col > loc.col):
        return "bad-error", f"column {loc.col}..{loc.end_col} outside the line ({len(loc.text)}): {msg}"
    rendered = str(e).splitlines()
    if not rendered[0].startswith(f"{loc.file}:{loc.line}:{loc.col}: error: ") or \
            not rendered[-1].startswith("  expected: "):
        return "bad-error", f"renders badly: {rendered[0]}"
    return "error", category(msg)


def run_case(data: bytes, deep: bool = False) -> tuple[str, str]:
    """(outcome, detail) of one case, in this process; see the module docstring."""
    import unfold as uf
    try:
        rec = uf.parse(data, file="<fuzz>")
    except uf.ModelError as e:
        return judge_error(e, data)
    except MemoryError:
        return "memory", "MemoryError while parsing"
    except Exception as e:  # noqa: BLE001  (the point: anything else is a crash)
        return "crash", _where(e)
    try:
        return _run_valid(uf, rec, deep)
    except uf.UnfoldError as e:
        return "late-error", f"{type(e).__name__}: {str(e).splitlines()[0][:150]}"
    except MemoryError:
        return "memory", "MemoryError while running a valid model"
    except Exception as e:  # noqa: BLE001
        return "crash", "after the checker: " + _where(e)


def _where(e: BaseException) -> str:
    import traceback
    frames = [f for f in traceback.extract_tb(e.__traceback__) if "/unfold/" in f.filename or
              "/backends/" in f.filename or "/viz/" in f.filename] or traceback.extract_tb(e.__traceback__)[-1:]
    f = frames[-1] if frames else None
    where = f" at {Path(f.filename).name}:{f.lineno} ({f.name})" if f else ""
    return f"{type(e).__name__}{where}: {str(e)[:120]}"


#: the most numbers a valid model's params and one step's values may hold to be run
RUN_LIMIT = 200_000


def _run_valid(uf, rec, deep: bool) -> tuple[str, str]:
    import math

    import numpy as np

    from unfold.tools.gradcheck import random_run
    rec.listing()
    if sum(math.prod(s.shape) for s in rec.symbols.values()) > RUN_LIMIT:
        return "valid-large", "not run"
    tau, batch = 3, 2
    params, inputs, targets, init = random_run(rec, tau, batch, seed=0)
    size = dict(tau=tau, batch=batch, init=init)
    with np.errstate(all="ignore"):
        out = uf.evaluate(rec, params, inputs, targets, **size)
        if rec.loss is None:
            return "valid", "no loss"
        loss, grads = uf.value_and_grad(rec, params, inputs, targets, **size)
        if not deep:
            return "valid", "reference"
        fn = uf.compile(rec, target="numpy", dtype=np.float64)
        loss_c, grads_c = fn.value_and_grad(params, inputs, targets, **size)
    pairs = [("loss", loss_c, loss), ("evaluate's loss", out["loss"], loss)] + \
        [(k, grads_c[k], grads[k]) for k in grads]
    if max(float(np.max(np.abs(b), initial=0.0)) for _, _, b in pairs) > 1e8:
        return "valid", "compiled (values too large to compare: float64 rounding dominates)"
    for key, a, b in pairs:
        if not np.allclose(a, b, rtol=1e-7, atol=1e-9, equal_nan=True):
            return "wrong-number", f"{key}: compiled {np.ravel(a)[:3]} vs reference {np.ravel(b)[:3]}"
    return "valid", "compiled"


# -- the harness: workers under limits -------------------------------------------------

#: cases a worker runs before a fresh one replaces it: a process that reads
#: tens of thousands of models grows (sympy's caches, garbage the graph
#: builds promote to the oldest generation), and the memory limit is for one case
RECYCLE = 1000

def worker(seed: int, memory_mb: int):
    """Run the cases whose indices arrive on stdin, one JSON line each back."""
    import resource
    limit = memory_mb * 2 ** 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr  # whatever the library prints stays out of the protocol
    import unfold  # noqa: F401  (imported before "ready": the parent's clock starts after it)
    print(json.dumps("ready"), file=out, flush=True)
    for line in sys.stdin:
        index, deep = json.loads(line)
        try:
            outcome = run_case(make_case(seed, index), deep)
        except MemoryError:
            outcome = ("memory", "MemoryError")
        print(json.dumps(outcome), file=out, flush=True)


class _Worker:
    def __init__(self, seed: int, memory_mb: int, cache: str):
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "NUMBA_NUM_THREADS": "1", "UNFOLD_CACHE_DIR": cache, "PYTHONHASHSEED": "0"}
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", "--seed", str(seed),
                                      "--memory", str(memory_mb)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        self.lines: queue.Queue = queue.Queue()
        self.done = 0
        threading.Thread(target=self._read, daemon=True).start()
        if self.lines.get(timeout=120) != "ready":
            raise RuntimeError("a fuzz worker did not start")

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))
        self.lines.put(None)

    def run(self, index: int, deep: bool, timeout: float):
        """The outcome, or None with the worker killed (a hang) or dead."""
        self.done += 1
        self.proc.stdin.write(json.dumps([index, deep]) + "\n")
        self.proc.stdin.flush()
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            return ["hang", f"over {timeout:g} s"]

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait()


def fuzz(n: int, seed: int = 0, jobs: int = 2, timeout: float = 20.0, memory_mb: int = 2048,
         deep: float = 0.0, start: int = 0) -> dict[int, tuple[str, str]]:
    """index -> (outcome, detail) for cases start..start+n-1, run by `jobs` workers."""
    import tempfile
    todo = iter(range(start, start + n))
    results: dict[int, tuple[str, str]] = {}
    lock = threading.Lock()

    def manage(cache):
        w = None
        while True:
            with lock:
                index = next(todo, None)
            if index is None:
                break
            if w and (w.proc.poll() is not None or w.done >= RECYCLE):
                w.close()
                w = None
            w = w or _Worker(seed, memory_mb, cache)
            wants_deep = random.Random(f"deep:{seed}:{index}").random() < deep
            outcome = w.run(index, wants_deep, timeout)
            if outcome is None:  # the worker died: the memory limit or a crash of the interpreter
                code = w.proc.wait()
                outcome = ["memory" if code in (-9, -6) else "crash", f"the worker died (exit {code})"]
            results[index] = tuple(outcome)
        if w:
            w.close()

    with tempfile.TemporaryDirectory() as cache:
        threads = [threading.Thread(target=manage, args=(cache,)) for _ in range(jobs)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    return results


def report(results: dict[int, tuple[str, str]], seconds: float) -> str:
    by_outcome = Counter(o for o, _ in results.values())
    lines = [f"{len(results)} cases in {seconds:.0f} s"]
    for outcome in ("valid", "valid-large", "error", *FAILURES):
        lines.append(f"  {outcome:<13} {by_outcome.get(outcome, 0):>7}")
    errors = Counter(d for o, d in results.values() if o == "error")
    lines.append(f"error classes: {len(errors)}; the most frequent:")
    lines += [f"  {k:>6}  {d}" for d, k in errors.most_common(25)]
    failures = sorted((i, o, d) for i, (o, d) in results.items() if o in FAILURES)
    if failures:
        lines.append(f"FAILURES ({len(failures)}): python tests/fuzz.py --case INDEX shows one")
        lines += [f"  {i:>7}  {o:<12} {d}" for i, o, d in failures[:60]]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Fuzz the model language; exit 1 on any failure.")
    p.add_argument("--n", type=int, default=20000, help="number of cases")
    p.add_argument("--seed", type=int, default=0, help="the run's seed: cases are a function of (seed, index)")
    p.add_argument("--start", type=int, default=0, help="index of the first case")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds a case may take")
    p.add_argument("--memory", type=int, default=2048, help="MiB of address space per worker")
    p.add_argument("--deep", type=float, default=0.05, help="fraction of valid models also compiled (numpy)")
    p.add_argument("--case", type=int, help="show one case and its outcome (in this process)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.seed, args.memory)
        return 0
    if args.case is not None:
        data = make_case(args.seed, args.case)
        print(data.decode("utf-8", "backslashreplace"))
        print("->", *run_case(data, deep=args.deep > 0))
        return 0
    t0 = time.time()
    results = fuzz(args.n, args.seed, args.jobs, args.timeout, args.memory, args.deep, args.start)
    print(report(results, time.time() - t0))
    return 1 if any(o in FAILURES for o, _ in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
