"""What a training run recorded: per step the loss, the gradient norm
(before clipping), the learning rate and the time; per evaluation the loss
on held-out data.

    params, history = fit(...)
    history.loss[-1], history.best_eval_loss, history.best_step
    history.save("run.json"); History.load("run.json")
    history.plot("curves.png")            # needs matplotlib: pip install 'unfold-rnn[plot]'
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..lang.errors import UnfoldError


@dataclass
class History:
    step: list[int] = field(default_factory=list)        # 1, 2, ...: updates made after it
    loss: list[float] = field(default_factory=list)      # the training batch's loss at that step
    grad_norm: list[float] = field(default_factory=list)  # of the params' gradients, before clipping
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)   # since the run began
    eval_step: list[int] = field(default_factory=list)   # 0: before the first update
    eval_loss: list[float] = field(default_factory=list)
    stop_reason: str = ""                                  # why it stopped before its last step, if it did

    def record(self, step: int, loss: float, grad_norm: float, lr: float, seconds: float):
        self.step.append(step)
        self.loss.append(float(loss))
        self.grad_norm.append(float(grad_norm))
        self.lr.append(float(lr))
        self.seconds.append(float(seconds))

    def record_eval(self, step: int, loss: float):
        self.eval_step.append(step)
        self.eval_loss.append(float(loss))

    @property
    def last_step(self) -> int:
        return self.step[-1] if self.step else 0

    @property
    def best_eval_loss(self) -> float:
        """The lowest held-out loss (nan if there was no evaluation)."""
        return min(self.eval_loss, default=math.nan)

    @property
    def best_step(self) -> int | None:
        """The step of the lowest held-out loss."""
        if not self.eval_loss:
            return None
        return self.eval_step[self.eval_loss.index(self.best_eval_loss)]

    def __len__(self) -> int:
        return len(self.step)

    def __repr__(self) -> str:
        if not self.step:
            return "History(no steps)"
        evals = f", best eval loss {self.best_eval_loss:.6g} at step {self.best_step}" if self.eval_loss else ""
        stop = f", stopped: {self.stop_reason}" if self.stop_reason else ""
        return f"History({len(self)} steps, last loss {self.loss[-1]:.6g}{evals}{stop})"

    # -- files ------------------------------------------------------------------
    def save(self, path):
        """Write the history as JSON (what `unfold plot RUN.json` reads)."""
        Path(path).write_text(json.dumps({"unfold_history": 1, **asdict(self)}, indent=0))

    @classmethod
    def load(cls, path) -> "History":
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise UnfoldError(f"cannot read a training history from {path}: {e}") from None
        if not isinstance(data, dict) or data.get("unfold_history") != 1:
            raise UnfoldError(f"{path} is not a training history written by History.save")
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    def plot(self, path=None, title: str | None = None):
        """The loss (training and held-out) and gradient-norm curves, a
        matplotlib Figure; saved to `path` if given."""
        from .plot import plot_histories
        return plot_histories({title or "": self}, path)
