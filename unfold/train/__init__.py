"""Training on the compiled kernels: optimizers, schedules, a fit loop, data
helpers, saving, generation, the echo-state readout, plots.

    from unfold.train import fit, optim, Batch
    params, history = fit(fn, params, (inputs, targets), steps=1000, optimizer=optim.Adam(1e-3, clip=1.0))

Modules: optim (SGD, Adam, AdamW; schedules re-exported), schedules, fit
(fit, eval_loss, FitState), callbacks (EarlyStopping, Checkpoint), history,
data (Batch, pad_sequences, random_windows, one_hot), io (save, load_params,
load_model), generate (generate, softmax), readout (ridge_readout), ctc (ctc_loss,
ctc_value_and_grad; kernels in ctc_kernels), plot
(plot_histories, plot_jacobians; needs matplotlib), progress (tqdm or lines).
"""
from . import optim, schedules
from .callbacks import Checkpoint, EarlyStopping
from .ctc import ctc_loss, ctc_value_and_grad
from .data import Batch, one_hot, pad_sequences, random_windows
from .fit import FitState, eval_loss, fit
from .generate import generate, softmax
from .history import History
from .io import load_model, load_params, read_meta, save
from .plot import plot_histories, plot_jacobians
from .readout import ridge_readout

__all__ = ["optim", "schedules", "Checkpoint", "EarlyStopping", "Batch", "one_hot", "pad_sequences",
           "random_windows", "FitState", "eval_loss", "fit", "generate", "softmax", "History", "load_model",
           "load_params", "read_meta", "save", "plot_histories", "plot_jacobians", "ridge_readout",
           "ctc_loss", "ctc_value_and_grad"]
