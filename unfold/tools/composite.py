"""The command line for models of several recurrences: an encoder–decoder file
(`with encoder:` / `with decoder(...):` blocks) is shown, checked and drawn
here; `cli` sends it here when the file is written that way."""
from __future__ import annotations

import numpy as np

from ..lang.errors import UnfoldError
from ..lang.ir import Role
from .gradcheck import gradcheck, random_run, table

#: the commands that take an encoder–decoder model
COMMANDS = ("show", "check", "draw")


def refuse(command: str, ed) -> None:
    if command not in COMMANDS:
        raise UnfoldError(f"{ed.file} is an encoder–decoder model: `unfold {command}` takes one recurrence "
                          f"(expected one of: unfold {', '.join(COMMANDS)})")


def random_problem(ed, tau: int, batch: int, seed: int):
    """Params, inputs, targets and per-part lengths (one full-length sequence, the others random)."""
    params = ed.init_params(seed)
    _, inputs, _, _ = random_run(ed.encoder, tau, batch, seed)
    _, dec_inputs, targets, _ = random_run(ed.decoder, tau, batch, seed + 1)
    inputs.update({k: v for k, v in dec_inputs.items() if k not in ed.linked_inputs()})
    rng = np.random.default_rng(seed)
    lengths = {p: np.concatenate([[tau], rng.integers(1, tau + 1, batch - 1)]) for p in ("encoder", "decoder")}
    return params, inputs, targets, lengths


def check(ed, target: str, tau: int, batch: int, seed: int, options: dict) -> bool:
    """Values and gradients of `target` against the step-program interpreter, and
    float64 finite differences of the whole composition; prints the tables."""
    from ..seq2seq import compile as compile_ed
    params, inputs, targets, lengths = random_problem(ed, tau, batch, seed)
    print(f"gradient check of encoder–decoder {ed.name}: tau={tau} (both parts) batch={batch} float64, "
          f"lengths {lengths['encoder'].tolist()} and {lengths['decoder'].tolist()}, target={target}")
    fn = compile_ed(ed, "numpy" if target == "reference" else target, np.float64, **options)
    ok = True
    if target not in ("reference", "numpy"):
        ok = _against_interpreter(fn, ed, params, inputs, targets, lengths)
    vg = lambda r, p, i, t, **kw: fn.value_and_grad(p, i, t, lengths=lengths)  # noqa: E731
    loss = lambda p, i, ini: fn.loss(p, i, targets, lengths=lengths)  # noqa: E731
    tensors = [(k, params, k) for k in sorted(params)]
    tensors += [(k, inputs, k) for k in sorted(inputs)]
    rows = gradcheck(None, params, inputs, targets, value_and_grad=vg, loss_fn=loss, tensors=tensors)
    print(table(rows))
    return ok and all(r.ok for r in rows)


def _against_interpreter(fn, ed, params, inputs, targets, lengths) -> bool:
    from ..seq2seq import compile as compile_ed
    ref = compile_ed(ed, "numpy", np.float64)
    loss_c, grads_c = fn.value_and_grad(params, inputs, targets, lengths=lengths)
    loss_r, grads_r = ref.value_and_grad(params, inputs, targets, lengths=lengths)
    print(f"{'tensor':<14} {'compiled vs interpreter max rel diff':>38}  ok")
    ok = True
    for key in ["loss", *sorted(grads_r)]:
        a, b = (loss_c, loss_r) if key == "loss" else (grads_c[key], grads_r[key])
        err = float(np.max(np.abs(np.asarray(a) - b), initial=0.0) / max(np.max(np.abs(b), initial=0.0), 1e-12))
        ok &= err <= 1e-10
        print(f"{key:<14} {err:>38.2e}  {'yes' if err <= 1e-10 else 'NO'}")
    return ok


def describe_inputs(ed) -> str:
    """What a call takes, for `unfold show`."""
    parts = []
    for name, rec in ed.parts.items():
        given = [s.name for s in rec.of_role(Role.INPUT) if s.name not in ed.linked_inputs()]
        parts.append(f"{name}: inputs {', '.join(given) or 'none'}; targets "
                     f"{', '.join(s.name for s in rec.of_role(Role.TARGET)) or 'none'}")
    return "call: " + "; ".join(parts)
