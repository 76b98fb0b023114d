"""Progress of a training run: a tqdm bar, or a printed line now and then.

    progress="auto"   a tqdm bar if tqdm is installed, else a line every tenth of the run
    progress=True     a tqdm bar (tqdm missing: an error naming pip install 'unfold-rnn[progress]')
    progress="print"  a line every tenth of the run
    progress=False    nothing
"""
from __future__ import annotations

import sys

from ..lang.errors import UnfoldError
from ..lang.extras import available, require

MODES = ("auto", "print", True, False)


class Progress:
    def __init__(self, mode, steps: int, every: int | None = None):
        if not (mode is True or mode is False or (isinstance(mode, str) and mode in MODES)):
            raise UnfoldError(f"progress must be one of \"auto\", \"print\", True or False, not {mode!r}")
        if mode == "auto":
            mode = True if available("tqdm") else "print"
        self.bar = None
        if mode is True:
            tqdm = require("tqdm", "progress", "a progress bar (progress=True)")
            self.bar = tqdm.tqdm(total=steps, unit="step", dynamic_ncols=True, mininterval=0.25)
        self.printing = mode == "print"
        self.every = every or max(1, steps // 10)
        self.seen = 0

    def update(self, state):
        """After a step: the loss, gradient norm and last held-out loss."""
        self.seen += 1
        h = state.history
        if self.bar is not None:
            info = {"loss": f"{h.loss[-1]:.4g}", "|g|": f"{h.grad_norm[-1]:.3g}"}
            if h.eval_loss:
                info["eval"] = f"{h.eval_loss[-1]:.4g}"
            self.bar.set_postfix(info, refresh=False)
            self.bar.update(1)
        elif self.printing and (self.seen % self.every == 0 or state.stop):
            evals = f"  eval {h.eval_loss[-1]:.5g}" if h.eval_loss else ""
            print(f"step {h.step[-1]:>6}  loss {h.loss[-1]:.5g}  |g| {h.grad_norm[-1]:.3g}  "
                  f"lr {h.lr[-1]:.3g}{evals}  ({h.seconds[-1]:.1f} s)", file=sys.stdout, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
