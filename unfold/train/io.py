"""Params on disk: one `.npz` with the model's text and a checksum.

    save("lstm.npz", params, rec)              # rec: the Recurrence they belong to
    params = load_params("lstm.npz")           # dict name -> array, checked against the checksum
    params = load_params("lstm.npz", rec)      # ... and against rec's params (names, shapes)
    rec, params = load_model("lstm.npz")       # the model rebuilt from the text saved with them

The file holds each param as `param:<name>` and one JSON record
`unfold:meta`: the model's name, its dims, its checked listing (what the
compiled code depends on), its `.rnn` text when there is one, and the
caller's `meta`; `unfold:checksum` is a SHA-256 of all of it.  Everything is
plain arrays and strings: the file is read without pickle.

The text is the model's file when `rec` was loaded from one (and the file
still gives the same recurrence), or `text=` when given (a model from
`uf.parse(text)`); a model built in Python has none, and `load_model` then
says so (rebuild it and use `load_params(path, rec)`).
"""
from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np

from ..lang.dsl import parse
from ..lang.errors import InputError, UnfoldError
from ..lang.recurrence import Recurrence, canonical

FORMAT = 1
_PARAM, _META, _SUM = "param:", "unfold:meta", "unfold:checksum"


def save(path, params: dict, rec: Recurrence | None = None, text: str | None = None, meta: dict | None = None):
    """Write `params` (every param and const) to `path` (.npz) with the model's text."""
    if not isinstance(params, dict) or not params:
        raise InputError("save: params must be a non-empty dict name -> array")
    arrays = {k: np.ascontiguousarray(v) for k, v in params.items()}
    if rec is not None:
        _check_against(rec, arrays, "save")
    record = {"format": FORMAT, "model": rec.name if rec else None, "dims": dict(rec.dims) if rec else {},
              "listing": canonical(rec) if rec else None, "text": _model_text(rec, text), "meta": meta or {}}
    try:
        info = json.dumps(record, sort_keys=True, default=_plain)
    except (TypeError, ValueError) as e:
        raise InputError(f"save: {e}") from None
    out = {_PARAM + k: v for k, v in arrays.items()}
    out[_META], out[_SUM] = np.array(info), np.array(_checksum(info, arrays))
    with open(path, "wb") as f:   # a file object: np.savez would append ".npz" to a name without it
        np.savez(f, **out)


def load_params(path, rec: Recurrence | None = None) -> dict[str, np.ndarray]:
    """The params saved at `path`, checked (and against `rec`'s, if given)."""
    params, _ = _read(path)
    if rec is not None:
        _check_against(rec, params, f"the params in {path}")
    return params


def load_model(path) -> tuple[Recurrence, dict[str, np.ndarray]]:
    """(the recurrence, its params) from a file written by `save` with the model's text."""
    params, record = _read(path)
    if not record.get("text"):
        raise UnfoldError(f"{path} was saved without the model's text (a model built in Python?); "
                          "build the model and call load_params(path, rec)")
    rec = parse(record["text"], file=f"{path}:model", name=record["model"])
    rec = rec.bind(**{k: v for k, v in record["dims"].items() if k in rec.dim_decls})
    if canonical(rec) != record["listing"]:
        raise UnfoldError(f"the model text in {path} no longer gives the recurrence it was saved with "
                          "(has the model language changed?)")
    _check_against(rec, params, f"the params in {path}")
    return rec, params


def read_meta(path) -> dict:
    """What `save` recorded beside the params: model, dims, text, meta."""
    return _read(path)[1]


def _read(path) -> tuple[dict, dict]:
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise UnfoldError(f"cannot read saved params from {path}: {e}") from None
    if _META not in data or _SUM not in data:
        raise UnfoldError(f"{path} was not written by unfold's save (no {_META} record)")
    info = str(data[_META])
    params = {k[len(_PARAM):]: v for k, v in data.items() if k.startswith(_PARAM)}
    if _checksum(info, params) != str(data[_SUM]):
        raise UnfoldError(f"{path} is damaged: its checksum does not match its contents")
    return params, json.loads(info)


def _checksum(info: str, arrays: dict) -> str:
    """SHA-256 over the record and each param's name, dtype, shape and bytes."""
    h = hashlib.sha256(info.encode())
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"\0{k}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _model_text(rec: Recurrence | None, text: str | None) -> str | None:
    """The `.rnn` text of `rec`: `text`, or its file if that still gives `rec`."""
    if text is not None:
        if rec is not None and not _gives(text, rec):
            raise InputError("save: text= does not give the recurrence `rec` (with its dims)")
        return text
    if rec is None or not Path(rec.file).is_file():
        return None
    try:
        text = Path(rec.file).read_text()
    except OSError:
        return None
    return text if _gives(text, rec) else None


def _gives(text: str, rec: Recurrence) -> bool:
    try:
        other = parse(text, file=rec.file, name=rec.name)
        other = other.bind(**{k: v for k, v in rec.dims.items() if k in other.dim_decls})
    except UnfoldError:
        return False
    return canonical(other) == canonical(rec)


def _check_against(rec: Recurrence, params: dict, what: str):
    want = {s.name: tuple(s.shape) for s in rec.params}
    missing, extra = sorted(set(want) - set(params)), sorted(set(params) - set(want))
    if missing or extra:
        raise InputError(f"{what} do not match `{rec.name}`: " + "; ".join(
            p for p in (f"missing {', '.join(missing)}" if missing else "",
                        f"not in the model: {', '.join(extra)}" if extra else "") if p))
    for k, shape in want.items():
        if tuple(np.shape(params[k])) != shape:
            raise InputError(f"{what}: `{k}` has shape {list(np.shape(params[k]))}, the model's {list(shape)}")


def _plain(value):
    """JSON for numpy numbers in `meta`."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"meta values must be numbers, strings, lists or dicts, not {type(value).__name__}")
