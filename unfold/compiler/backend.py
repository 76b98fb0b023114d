"""Targets: the `Backend` interface and the `BACKENDS` registry.

A backend prints (or interprets) a step program; it decides nothing about
it.  The compiler knows backends by name only: each is a module of
`unfold.backends` with a `BACKEND` object, imported on first use, so a
target whose optional dependency is missing is a clear error naming it, and
the compiler never imports upward.

    backend("cpu").emit(program, np.float32)      # (source, kernel arguments)
    backend("numpy").kernels(program, np.float64) # runs the program itself

Adding a target: a module with a `Backend` subclass, one line here.
"""
from __future__ import annotations

import importlib

import numpy as np

from ..lang.errors import UnfoldError
from . import layout

#: target -> (module, the optional extra it needs, what that extra installs)
BACKENDS = {
    "numpy": ("unfold.backends.interpreter", None, None),
    "cpu": ("unfold.backends.numba_cpu", None, None),
    "cuda": ("unfold.backends.cuda", "cuda", "numba-cuda"),
}


class Backend:
    """What the compiler asks of a target.  Source-generating targets
    implement `emit` and `load`; an interpreter implements `kernels`."""
    name = ""
    generates_source = True
    #: option -> its allowed values, the first the default (e.g. the CUDA schedule)
    options: dict[str, tuple] = {}
    #: does it take device arrays (and leave results there)?
    device_arrays = False

    def emit(self, program, dtype, unroll: int = 1, tau: int | None = None, **options) -> tuple[str, dict]:
        raise NotImplementedError

    def load(self, module, args: dict, source: str):
        raise NotImplementedError

    def kernels(self, program, dtype, unroll: int = 1, tau: int | None = None, **options):
        raise NotImplementedError

    def outputs(self, program, bufs: dict, device, run) -> dict:
        return layout.outputs(program, bufs, run.tau, run.batch)

    def gradients(self, program, d: dict, device, run) -> dict:
        return layout.gradients(program, d, run)

    def ptx(self, kernels, cc=(9, 0)) -> str:
        raise UnfoldError(f"PTX is for target='cuda', not {self.name!r}")


def backend(name: str) -> Backend:
    """The backend of a target, imported on first use."""
    if name not in BACKENDS:
        raise UnfoldError(f"unknown target {name!r}; expected one of {', '.join(BACKENDS)}")
    module, extra, package = BACKENDS[name]
    try:
        return importlib.import_module(module).BACKEND
    except ImportError as e:
        if extra is None:
            raise
        raise UnfoldError(f"target={name!r} needs {package}, which is not installed ({e.name}): "
                          f"pip install 'unfold-rnn[{extra}]', or use target='cpu'") from None


def check_options(b: Backend, options: dict) -> dict:
    """Every option of the target, each a value it allows (the defaults filled in)."""
    unknown = sorted(set(options) - set(b.options))
    if unknown:
        known = ", ".join(b.options) or "none"
        raise UnfoldError(f"{unknown[0]}= is not an option of target={b.name!r} (its options: {known})"
                          + "".join(f"; {unknown[0]}= is for target={name!r}" for name in _having(unknown[0])))
    out = {}
    for key, allowed in b.options.items():
        value = options.get(key, allowed[0])
        if value not in allowed:
            raise UnfoldError(f"unknown {key} {value!r}; expected one of {', '.join(map(str, allowed))}")
        out[key] = value
    return out


def _having(option: str) -> list[str]:
    """The targets (installed here) that take an option."""
    found = []
    for name in BACKENDS:
        try:
            if option in backend(name).options:
                found.append(name)
        except (UnfoldError, ImportError):
            continue
    return found


FLOATS = (np.float32, np.float64)
