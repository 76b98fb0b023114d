"""An unfold recurrence as a PyTorch module.

    module = to_torch(rec, params)            # an nn.Module; params as nn.Parameters
    h = module(x)                             # x [T, B, D] -> h [T, B, H] (one state), else a dict
    loss = F.mse_loss(head(h), y); loss.backward()   # any downstream loss, any optimizer

The forward pass runs the compiled kernels and the backward pass the compiled
BPTT (`fn.vjp` with the cotangents PyTorch hands back), through one
`torch.autograd.Function` (unfold/bridges/torch_module.py).  This module
imports PyTorch only when called, so `import unfold` never needs it.
"""
from __future__ import annotations

import numpy as np

from ..lang.errors import UnfoldError
from ..lang.recurrence import Recurrence
from .common import checked_params, output_names
from ..lang.extras import require


def to_torch(rec: Recurrence, params: dict | None = None, target: str = "cpu", dtype=np.float32,
             outputs=None, **compile_options):
    """An `nn.Module` computing `rec` with unfold's kernels.

    params: initial values (dict name -> array); None draws them with the
    model's own initializers, seeded from PyTorch's generator (so
    `torch.manual_seed` makes them reproducible).  dtype: the parameters'
    dtype, float32 or float64; `module.double()` then recompiles for float64.
    outputs: what `module(x)` returns: by default the states (one state: its
    [T, B, H] tensor; several: a dict by name); a name (a state or an
    intermediate) for that tensor alone, or a list of names for a dict.
    compile_options go to `uf.compile` (mode, unroll, cache_dir, ...)."""
    torch = require("torch", "torch", "uf.to_torch")
    from .torch_module import UnfoldModule   # noqa: PLC0415 (it imports torch at module level)
    if not isinstance(rec, Recurrence):
        raise UnfoldError(f"uf.to_torch takes a recurrence (uf.load, uf.parse), not {type(rec).__name__}")
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise UnfoldError(f"uf.to_torch: dtype must be float32 or float64, not {np.dtype(dtype)}")
    names, single = output_names(rec, outputs)
    if params is None:
        seed = int(torch.randint(0, 2 ** 31 - 1, ()).item())
        params = rec.init_params(seed=seed, dtype=dtype)
    return UnfoldModule(rec, checked_params(rec, params, dtype), dtype, target, names, single, compile_options)
