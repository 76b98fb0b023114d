"""What the PyTorch and JAX bridges share: which outputs a call returns, and
the params checked once, when a bridge is made, rather than at every call."""
from __future__ import annotations

import numpy as np

from ..lang.errors import UnfoldError
from ..lang.ir import Role
from ..lang.recurrence import Recurrence


def output_names(rec: Recurrence, outputs) -> tuple[list[str], bool]:
    """(the outputs a call returns, whether it returns one tensor rather than a dict)."""
    known = {s.name for s in rec.of_role(Role.STATE, Role.INTER)}
    if outputs is None:
        states = [s.name for s in rec.states]
        if not states:
            raise UnfoldError(f"`{rec.name}` has no state; pass outputs= (names of its intermediates)")
        return states, len(states) == 1
    single = isinstance(outputs, str)
    names = [outputs] if single else list(outputs)
    for name in names:
        if name not in known:
            raise UnfoldError(f"outputs: `{name}` is no output of `{rec.name}`; its states and intermediates: "
                              f"{', '.join(sorted(known))}")
    if not names:
        raise UnfoldError("outputs: expected a name or a non-empty list of names")
    return names, single


def check_params(rec: Recurrence, shapes: dict):
    """Every param and const of `rec` given (`shapes`: name -> shape), no other, each of its shape."""
    if not isinstance(shapes, dict):
        raise UnfoldError(f"params must be a dict name -> array, not {type(shapes).__name__}")
    wanted = {s.name: s for s in rec.params}
    extra, missing = sorted(set(shapes) - set(wanted)), sorted(set(wanted) - set(shapes))
    if extra or missing:
        raise UnfoldError(f"params of `{rec.name}`: " + "; ".join(
            ([f"missing {', '.join(missing)}"] if missing else []) + ([f"unknown {', '.join(extra)}"] if extra else [])))
    for name, s in wanted.items():
        if tuple(shapes[name]) != tuple(s.shape):
            raise UnfoldError(f"param `{name}` has shape {list(shapes[name])}; expected {list(s.shape)}")


def checked_params(rec: Recurrence, params: dict, dtype) -> dict[str, np.ndarray]:
    """Every param and const of `rec`, by name, as C-contiguous arrays of `dtype`."""
    if not isinstance(params, dict):
        raise UnfoldError(f"params must be a dict name -> array, not {type(params).__name__}")
    arrays = {k: np.ascontiguousarray(_numpy(v), dtype=dtype) for k, v in params.items()}
    check_params(rec, {k: a.shape for k, a in arrays.items()})
    return arrays


def _numpy(v):
    """A torch tensor's values as numpy; anything else as it is."""
    return v.detach().cpu().numpy() if hasattr(v, "detach") else v
