"""The fuzzer (tests/fuzz.py) in CI: a few thousand cases under per-case time and
memory limits, and hypothesis over the grammar and over mutations of valid
models (which shrinks what it finds).  Zero crashes, hangs, memory errors,
wrong numbers, and errors without a location or an `expected:` line."""
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import unfold as uf

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fuzz  # noqa: E402
from randrec import random_model  # noqa: E402

#: the CI subset: cases of seed 1 (the script's default is seed 0), a tenth of the valid ones compiled
CI_CASES, CI_SEED, CI_DEEP = 2500, 1, 0.1


class Draw:
    """A chooser over hypothesis's `draw`, so the fuzzer's generators shrink."""

    def __init__(self, draw):
        self.draw = draw

    def choice(self, options):
        return self.draw(st.sampled_from(list(options)))

    def integer(self, lo: int, hi: int) -> int:
        return self.draw(st.integers(lo, hi))

    def chance(self, p: float) -> bool:
        return self.draw(st.integers(0, 999)) < p * 1000

    def permutation(self, items: list) -> list:
        return self.draw(st.permutations(items))


@st.composite
def grammar_models(draw) -> bytes:
    c = Draw(draw)
    text = fuzz.grammar_model(c)
    for _ in range(draw(st.integers(0, 2))):
        text = c.choice(fuzz.MUTATIONS)(c, text)
    return fuzz.encode(c, text)


@st.composite
def mutants(draw) -> bytes:
    """A valid random recurrence (tests/randrec.py) or a zoo model, mutated."""
    c = Draw(draw)
    text = draw(st.one_of(random_model().map(lambda case: case[0]), st.sampled_from(list(fuzz.ZOO.values()))))
    for _ in range(draw(st.integers(1, 3))):
        text = c.choice(fuzz.MUTATIONS + (fuzz.mutate_mildly,))(c, text)
    return fuzz.encode(c, text)


def assert_no_failure(data: bytes):
    outcome, detail = fuzz.run_case(data)
    assert outcome not in fuzz.FAILURES, f"{outcome}: {detail}\n{data.decode('utf-8', 'backslashreplace')}"


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(grammar_models())
def test_fuzz_grammar_models(data):
    assert_no_failure(data)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutants())
def test_fuzz_mutated_models(data):
    assert_no_failure(data)


def test_fuzz_zoo_models_are_valid():
    for name, text in fuzz.ZOO.items():
        assert fuzz.run_case(text.encode())[0] == "valid", name


def test_fuzz_cases_are_reproducible():
    assert fuzz.make_case(3, 17) == fuzz.make_case(3, 17) != fuzz.make_case(3, 18)


def test_fuzz_judges_errors():
    """An error that does not say where, or what was expected, is a failure."""
    text = b"x = input(2)\nh[t] = q\n"
    with pytest.raises(uf.ModelError) as info:
        uf.parse(text)
    e = info.value
    assert fuzz.judge_error(e, text)[0] == "error"
    assert fuzz.judge_error(uf.ModelError(e.message, e.loc), text)[0] == "bad-error"
    assert fuzz.judge_error(uf.ModelError(e.message, None, "x"), text)[0] == "bad-error"
    assert fuzz.judge_error(e, b"# one more line\n" + text)[0] == "bad-error"  # the wrong line quoted


def test_fuzz_ci_cases():
    """The CI subset, in worker processes under a time and a memory limit per case."""
    results = fuzz.fuzz(CI_CASES, seed=CI_SEED, jobs=2, timeout=30, memory_mb=2048, deep=CI_DEEP)
    report = fuzz.report(results, 0)
    failures = [o for o, _ in results.values() if o in fuzz.FAILURES]
    assert not failures, report
    outcomes = {o for o, _ in results.values()}
    assert {"valid", "error"} <= outcomes, report
