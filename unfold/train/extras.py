"""Optional extras, imported on first use: a missing one is an error naming
the extra that installs it.

    pyplot = require("matplotlib", "plot", "history.plot()")
"""
from __future__ import annotations

import importlib

from ..lang.errors import UnfoldError

def require(module: str, extra: str, what: str):
    """`module` imported, or an UnfoldError saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UnfoldError(f"{what} needs {module.split('.')[0]}, which is not installed: "
                          f"pip install 'unfold-rnn[{extra}]'") from None


def available(module: str) -> bool:
    """Whether `module` can be imported (without raising for a missing one)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
