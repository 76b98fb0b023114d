"""The optional extras the bridges need, imported on first use.

    torch = require("torch", "uf.to_torch")    # the module, or an UnfoldError naming the extra

The core package never imports PyTorch, JAX or Dask: each bridge asks for its
library when it is called, so `import unfold` works without them and a user
without one learns which extra to install (`pip install 'unfold-rnn[torch]'`).
"""
from __future__ import annotations

import importlib

from ..lang.errors import UnfoldError

#: extra -> (the module to import, the library's name for people)
EXTRAS = {"torch": ("torch", "PyTorch"), "jax": ("jax", "JAX"), "dask": ("distributed", "Dask's distributed")}


def require(extra: str, what: str):
    """The module of an optional extra; if it is missing, an UnfoldError that
    says who needed it (`what`) and how to install it."""
    module, library = EXTRAS[extra]
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise UnfoldError(f"{what} needs {library}, which is not installed ({e.name or module}): "
                          f"pip install 'unfold-rnn[{extra}]'") from None
