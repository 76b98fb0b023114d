"""The command line: every bad flag or model is a clear error with exit 2 and no
traceback; --help shows the defaults; the README's synopsis is the parser's."""
import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from unfold.tools import cli

ROOT = Path(__file__).resolve().parent.parent
ELMAN = str(ROOT / "examples" / "models" / "elman.rnn")
BAD = ROOT / "tests" / "bad_models"


def run(capsys, *argv):
    """(exit code, stdout, stderr) of `unfold ARGV`, in this process."""
    try:
        code = cli.main(list(argv))
    except SystemExit as e:  # argparse's own errors
        code = e.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "internal error" not in err, err
    return code, out, err


@pytest.mark.parametrize("argv, words", [
    (["graph", ELMAN, "--tau", "3", "--out", "dag.gexf"], ["dag.gexf", ".json, .graphml"]),
    (["graph", ELMAN, "--tau", "-1"], ["--tau", "not a positive whole number"]),
    (["graph", ELMAN, "--tau", "3", "--level", "var", "--grad"], ["--grad needs the op-level graph"]),
    (["run", ELMAN, "--tau", "-3"], ["--tau", "-3"]),
    (["run", ELMAN, "--tau", "3", "--batch", "0"], ["--batch", "0 is not a positive whole number"]),
    (["run", ELMAN, "--tau", "three"], ["'three' is not a whole number"]),
    (["run", ELMAN, "--tau", "3", "--seed", "-1"], ["--seed", "negative"]),
    (["run", ELMAN, "--tau", "10000000000"], ["--tau 10000000000", "needs about", "GiB"]),
    (["draw", ELMAN, "-o", "/no/such/dir/a.svg"], ["the folder /no/such/dir does not exist"]),
    (["draw", ELMAN, "-o", "a.txt"], ["cannot write a .txt file", ".svg"]),
    (["bench", ELMAN, "--vs", "pytorch"], ["unknown peer 'pytorch'", "torch-loop"]),
    (["show", ELMAN, "--dims", "H=64", "--dims", "H=8"], ["--dims gives H twice"]),
    (["show", ELMAN, "--dims", "H=64,H=8"], ["H is given twice"]),
    (["show", ELMAN, "--dims", "Z=3"], ["no dim Z", "its dims: H, D, K"]),
    (["show", ELMAN, "--dims", "H=0"], ["from 1 to 2**53"]),
    (["show", ELMAN, "--dims", "H"], ["expected NAME=INTEGER"]),
    (["compile", ELMAN, "--ptx", "--cc", "nine"], ["not a compute capability"]),
    (["show", str(BAD / "not_utf8.rnn")], ["not_utf8.rnn:1:6: error: invalid UTF-8", "expected: "]),
    (["show", str(BAD / "utf16.rnn")], ["the file is UTF-16"]),
    (["show", str(BAD / "no_such_model.rnn")], ["cannot read model file"]),
    (["show", str(BAD / "too_deep_for_python.rnn")], ["too deeply for Python's parser"]),
])
def test_cli_bad_input_is_a_clear_error(capsys, argv, words):
    code, _, err = run(capsys, *argv)
    assert code == 2, err
    for w in words:
        assert w in err, err


def test_cli_refuses_an_output_file_before_building_the_graph(capsys, monkeypatch):
    import unfold.graph.unfolding as unfolding
    monkeypatch.setattr(unfolding, "unfold", lambda *a, **k: pytest.fail("the graph was built"))
    assert run(capsys, "graph", ELMAN, "--tau", "3", "--out", "dag.gexf")[0] == 2
    assert run(capsys, "graph", ELMAN, "--tau", "3", "--out", "/no/such/dir/dag.json")[0] == 2


def test_cli_refuses_a_drawing_before_drawing(capsys, monkeypatch):
    import unfold.viz as viz
    monkeypatch.setattr(viz, "draw", lambda *a, **k: pytest.fail("the drawing was made"))
    assert run(capsys, "draw", ELMAN, "-o", "/no/such/dir/a.svg")[0] == 2


def test_cli_dims_repeat_and_merge(capsys):
    code, out, _ = run(capsys, "show", ELMAN, "--dims", "H=6", "--dims", "D=2,K=5")
    assert code == 0 and "H = 6" in out and "D = 2" in out and "K = 5" in out


def test_cli_graph_writes_what_it_says(capsys, tmp_path):
    code, out, _ = run(capsys, "graph", ELMAN, "--tau", "2", "--out", str(tmp_path / "dag.json"))
    assert code == 0 and (tmp_path / "dag.json").exists()


def test_cli_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"unfold {cli.VERSION}"


def _subparsers():
    parser = cli.parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_cli_help_shows_every_default():
    for name, sub in _subparsers().items():
        text = " ".join(sub.format_help().split())
        for a in sub._actions:
            if a.default not in (None, False, argparse.SUPPRESS) and a.option_strings:
                shown = f"(default: {a.default})"
                assert shown in text or "default:" in (a.help or ""), f"{name} {a.option_strings}: {shown}"


def test_cli_bench_peers_are_the_benchmarks():
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import peers
    finally:
        sys.path.remove(str(ROOT))   # not pop(0): importing may put paths in front
    assert tuple(cli.PEERS) == tuple(peers.PEERS)


def _readme_synopsis() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("## Command line", 1)[1].split("\n\n", 2)[1]
    return {line.split()[1]: line.split("#")[0] for line in block.splitlines()
            if line.strip().startswith("unfold ") and not line.split()[1].startswith("-")}


def _outside_brackets(line: str) -> str:
    while True:
        shorter = re.sub(r"\[[^\[\]]*\]", "", line)
        if shorter == line:
            return line
        line = shorter


def test_cli_readme_synopsis_is_the_parser():
    """A flag outside [brackets] in the README is required by the parser, and the reverse;
    every flag the README names exists."""
    synopsis = _readme_synopsis()
    subs = _subparsers()
    assert set(synopsis) == set(subs)
    for name, line in synopsis.items():
        flags = {o: a for a in subs[name]._actions for o in a.option_strings}
        named = set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", line))
        assert named <= set(flags), f"{name}: {named - set(flags)} not in the parser"
        required = set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", _outside_brackets(line)))
        wanted = {a.option_strings[0] for a in subs[name]._actions if a.required and a.option_strings}
        shown = {flags[f].option_strings[0] for f in required}
        assert shown == wanted, f"unfold {name}: the README marks {shown} required, the parser {wanted}"


def test_cli_broken_pipe_exits_quietly():
    proc = subprocess.run(f"{sys.executable} -m unfold.tools.cli show {ELMAN} | head -1", shell=True,
                          capture_output=True, text=True, cwd=ROOT, executable="/bin/bash")
    assert proc.stdout.startswith("recurrence elman") and proc.stderr == "", proc.stderr
