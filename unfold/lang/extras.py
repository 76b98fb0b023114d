"""Optional extras, imported on first use: a missing one is an error naming
the extra that installs it.

    torch = require("torch", "torch", "uf.to_torch")     # module, extra, who needs it
    pyplot = require("matplotlib.pyplot", "plot", "history.plot()")

`import unfold` never needs PyTorch, JAX, Dask, matplotlib or tqdm: what needs
one asks for it when called, and a user without it learns which extra to
install (`pip install 'unfold-rnn[torch]'`).
"""
from __future__ import annotations

import importlib

from .errors import UnfoldError

#: a module's library, as people call it
_LIBRARY = {"torch": "PyTorch", "jax": "JAX", "distributed": "Dask's distributed"}


def require(module: str, extra: str, what: str):
    """`module` imported, or an UnfoldError saying who needed it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        raise UnfoldError(f"{what} needs {_LIBRARY.get(top, top)}, which is not installed "
                          f"({e.name or module}): pip install 'unfold-rnn[{extra}]'") from None


def available(module: str) -> bool:
    """Whether `module` can be imported (without raising for a missing one)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
