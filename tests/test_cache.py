"""The disk cache heals: a damaged entry is deleted with one warning and
regenerated, never loaded; processes racing on an empty cache all succeed.

Each case runs the compiled LSTM in a fresh process (numba loads its cached
machine code only there), damages one kind of file, and runs it again."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHILD = """
import sys, warnings, numpy as np, unfold as uf
sys.path.insert(0, {tests!r})
from gradcheck import random_run
warnings.simplefilter("always")
rec = uf.load({model!r}).bind(H=3, D=2)
run = random_run(rec, 4, 2, seed=0)
fn = uf.compile(rec, target="cpu", dtype=np.float64, cache_dir=sys.argv[1])
with warnings.catch_warnings(record=True) as caught:
    loss, grads = fn.value_and_grad(run.params, run.inputs, run.targets)
print(repr(loss), float(np.abs(grads["x"]).max()), fn.cache_hits)
for w in caught:
    print("WARNING", w.message)
"""


def run_child(cache: Path) -> tuple[float, float, int, list[str]]:
    code = CHILD.format(tests=str(ROOT / "tests"), model=str(ROOT / "examples" / "models" / "lstm.rnn"))
    proc = subprocess.run([sys.executable, "-c", code, str(cache)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, *rest = proc.stdout.splitlines()
    loss, dx, hits = first.split()
    return float(loss), float(dx), int(hits), [line for line in rest if line.startswith("WARNING")]


def truncate(path: Path):
    text = path.read_bytes()
    path.write_bytes(text[:-len(text.splitlines(keepends=True)[-1])])   # the last line missing


def garble(path: Path):
    path.write_bytes(b"garbage\n" + path.read_bytes()[40:])


DAMAGE = {
    "source missing its last line": ("unfold_lstm_*.py", truncate),
    "source garbled": ("unfold_lstm_*.py", garble),
    "step program garbled": ("unfold_lstm_*.program", garble),
    "numba index garbled": ("__pycache__/*.nbi", garble),
    "numba code truncated": ("__pycache__/*.nbc", truncate),
}


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """The undamaged result, and a cache dir holding every entry."""
    cache = tmp_path_factory.mktemp("cache")
    loss, dx, hits, warnings = run_child(cache)
    assert hits == 0 and not warnings and dx > 0
    return cache, loss, dx


@pytest.mark.parametrize("what", DAMAGE)
def test_cache_a_damaged_entry_is_regenerated_with_one_warning(what, clean, tmp_path):
    source, loss, dx = clean
    cache = tmp_path / "cache"
    subprocess.run(["cp", "-r", str(source), str(cache)], check=True)
    pattern, damage = DAMAGE[what]
    files = sorted(cache.glob(pattern))
    assert files, pattern
    for f in files:
        damage(f)
    got_loss, got_dx, _, warnings = run_child(cache)
    assert got_loss == loss and got_dx == dx, "a damaged cache changed the numbers"
    assert len(warnings) == 1 and ("damaged" in warnings[0] or "could not be loaded" in warnings[0]), warnings
    again = run_child(cache)   # healed: the next process loads it quietly
    assert again[:2] == (loss, dx) and again[2] >= 1 and not again[3], again


def test_cache_six_processes_racing_on_an_empty_cache(tmp_path):
    code = CHILD.format(tests=str(ROOT / "tests"), model=str(ROOT / "examples" / "models" / "lstm.rnn"))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    results = {tuple(out.split()[:2]) for out, _ in outs}
    assert len(results) == 1, results
    assert not list(tmp_path.glob("*.tmp")), "a temporary file was left behind"
    assert not any("WARNING" in out for out, _ in outs), "a racing write looked damaged to a reader"
