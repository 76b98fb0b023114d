"""PTX of a generated CUDA module, compiled with numba-cuda's NVVM: no GPU needed.

    text = ptx(kernels, cc=(9, 0))        # every kernel of the module, sm_90

Each kernel's signature (`SIGNATURES` in the generated module) comes from
the number of dimensions of its buffers (`signatures`).
"""
from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import numpy as np

from unfold.compiler.program import Buffer, Layout, Program
from unfold.lang.errors import UnfoldError

from .device import simulated

_NDIM = {Layout.PACKED: 2, Layout.INPUT: 3, Layout.STATIC_INPUT: 2, Layout.SEQ: 3, Layout.STATE: 3,
         Layout.STATIC: 1, Layout.MASK: 2, Layout.WEIGHTS: 2, Layout.ROWS: 2, Layout.PADDED: 3}


def _ndim(b: Buffer) -> int:
    return max(1, len(b.shape)) if b.layout is Layout.PARAM else _NDIM[b.layout]


def signatures(program: Program, kernels: dict[str, list[str]], dtype, helpers: dict[str, str]) -> dict:
    """kernel -> its numba signature, e.g. 'void(int64, float32[:, :, :], ...)'."""
    nd = {"_lossb": 1}
    for b in [*program.buffers, *(program.backward.buffers if program.backward else ())]:
        nd[b.name] = _ndim(b)
        if b.adjoint is not None:
            nd[b.adjoint.name] = _ndim(b)
    name = np.dtype(dtype).name

    def one(a):
        return "int64" if a in ("t", "T", "B", "S", "trunc") else f"{name}[{', '.join([':'] * nd[a])}]"
    sigs = {k: f"void({', '.join(one(a) for a in args)})" for k, args in kernels.items()}
    for k, sig in helpers.items():
        for n in (1, 2, 3):
            sig = sig.replace(f"A{n}", f"{name}[{', '.join([':'] * n)}]")
        sigs[k] = sig
    return sigs


def ptx(source_or_kernels, cc=(9, 0)) -> str:
    """PTX of every kernel of a generated module (its source text or its Kernels)."""
    from numba import cuda  # noqa: PLC0415 (numba-cuda: the optional extra)
    if simulated() or cuda.compile_ptx is None:
        raise UnfoldError("PTX needs numba-cuda's compiler, not the simulator: unset NUMBA_ENABLE_CUDASIM")
    module = getattr(source_or_kernels, "module", None) or _module(source_or_kernels)
    out = []
    for name, sig in module.SIGNATURES.items():
        text, _ = cuda.compile_ptx(getattr(module, name).py_func, sig, cc=tuple(cc))
        out.append(f"// ---- kernel {name}: {sig}\n{text}")
    return "\n".join(out)


def _module(source: str):
    """Import generated source from a file of its own (numba caches need one)."""
    path = Path(tempfile.mkdtemp(prefix="unfold_ptx_")) / "unfold_ptx_module.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"unfold_ptx_{abs(hash(source))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
