"""Weights between PyTorch's recurrent modules and unfold models.

    rec, params = from_torch(nn.LSTM(8, 32, num_layers=2))  # a checked model and its params
    out = compile(rec)(params, {"x": x})                   # out["h_l1"] is the module's output
    module.load_state_dict(to_torch_state_dict(rec, params))  # and back

`from_torch` writes the module's equations as `.rnn` text, PyTorch's own
(its documentation's names: `i_l0[t] = sigmoid(W_ii_l0 @ x[t] + b_ii_l0 +
W_hi_l0 @ h_l0[t-1] + b_hi_l0)`), and parses it: the model is an ordinary
recurrence that `unfold show` prints and every target compiles.

Both of PyTorch's biases are kept (`b_i*` and `b_h*`), not summed: the
model has the module's parameters one for one, so an optimizer moves them as
it moves PyTorch's, the round trip is exact, and GRU's `b_hn`, which sits
inside `r * (W_hn h + b_hn)`, needs no special case.  A backward direction's
names end in `_reverse` and its states run backward, as in PyTorch.

A stacked *bidirectional* module is not one model: unfold's checker lets no
forward state read a backward one within a step (docs/architecture.md), and
layer 2's forward state reads layer 1's backward state.  Import it a layer at
a time (`from_torch(module, layer=k)`) and feed layer k the concatenation of
layer k-1's two directions; the state dicts of the layers merge.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from ..lang.dsl import load, parse
from ..lang.errors import UnfoldError
from ..lang.ir import Role
from ..lang.recurrence import Recurrence, canonical
from ..lang.zoo import zoo_path
from ..lang.extras import require

#: PyTorch's gates, in the order it stacks their rows
GATES = {"LSTM": "ifgo", "GRU": "rzn", "RNN": "h"}
#: nn.RNNBase.mode -> (kind, nonlinearity)
MODES = {"LSTM": ("LSTM", "tanh"), "GRU": ("GRU", "tanh"), "RNN_TANH": ("RNN", "tanh"),
         "RNN_RELU": ("RNN", "relu")}
_LSTM_ACT = {"i": "sigmoid", "f": "sigmoid", "g": "tanh", "o": "sigmoid"}
_WEIGHT = re.compile(r"W_([ih])([a-z])_l(\d+)(_reverse)?$")


@dataclass(frozen=True)
class TorchConfig:
    """What a PyTorch recurrent module computes, as far as its equations go.
    `layers` are the layers in the model (all, or one imported alone);
    `input_size` is the width of the model's input `x`."""
    kind: str
    input_size: int
    hidden_size: int
    layers: tuple
    bidirectional: bool = False
    bias: bool = True
    nonlinearity: str = "tanh"

    @property
    def suffixes(self) -> tuple:
        return ("", "_reverse") if self.bidirectional else ("",)

    def units(self):
        """(layer, suffix) of every direction of every layer, in PyTorch's order."""
        return [(l, s) for l in self.layers for s in self.suffixes]

    def describe(self) -> str:
        extra = "".join([f", num_layers={len(self.layers)}" if len(self.layers) > 1 else "",
                         ", bidirectional=True" if self.bidirectional else "", ", bias=False" if not self.bias else "",
                         f", nonlinearity='{self.nonlinearity}'" if self.nonlinearity != "tanh" else ""])
        alone = f" (its layer {self.layers[0]})" if self.layers[0] > 0 else ""
        return f"nn.{self.kind}({self.input_size}, {self.hidden_size}{extra}){alone}"


# ------------------------------------------------------------ the model text

def model_text(cfg: TorchConfig) -> str:
    """The `.rnn` text of the module's recurrence (PyTorch's equations and names)."""
    lines = [f"# {cfg.describe()}, imported by uf.from_torch: PyTorch's equations and names,",
             "# both biases of every gate kept.", f"H = dim({cfg.hidden_size})", f"D = dim({cfg.input_size})",
             "x = input(D)"]
    for l, s in cfg.units():
        lines += _declarations(cfg, l, s)
    for l, s in cfg.units():
        lines += _equations(cfg, l, s)
    return "\n".join(lines) + "\n"


def _declarations(cfg: TorchConfig, l: int, s: str) -> list[str]:
    n, width = f"_l{l}{s}", "D" if l == cfg.layers[0] else "H"
    init = "init=uniform(1/sqrt(H))"   # PyTorch's: every weight and bias U(-1/sqrt(H), 1/sqrt(H))
    out = []
    for g in GATES[cfg.kind]:
        out += [f"W_i{g}{n} = param(H, {width}, {init})", f"W_h{g}{n} = param(H, H, {init})"]
        out += [f"b_i{g}{n} = param(H, {init})", f"b_h{g}{n} = param(H, {init})"] if cfg.bias else []
    direction = ', direction="backward"' if s else ""
    out += [f"{v}{n} = state(H, init=0{direction})" for v in ("h", "c")[:2 if cfg.kind == "LSTM" else 1]]
    return out


def _equations(cfg: TorchConfig, l: int, s: str) -> list[str]:
    n, prev = f"_l{l}{s}", "t+1" if s else "t-1"
    x = "x[t]" if l == cfg.layers[0] else f"h_l{l - 1}[t]"
    h = f"h{n}[{prev}]"

    def affine(g, side, v):   # W_ig x + b_ig, with PyTorch's names
        return f"W_{side}{g}{n} @ {v}" + (f" + b_{side}{g}{n}" if cfg.bias else "")

    if cfg.kind == "LSTM":
        return [f"{g}{n}[t] = {_LSTM_ACT[g]}({affine(g, 'i', x)} + {affine(g, 'h', h)})" for g in "ifgo"] + [
            f"c{n}[t] = f{n}[t] * c{n}[{prev}] + i{n}[t] * g{n}[t]", f"h{n}[t] = o{n}[t] * tanh(c{n}[t])"]
    if cfg.kind == "GRU":
        return [f"{g}{n}[t] = sigmoid({affine(g, 'i', x)} + {affine(g, 'h', h)})" for g in "rz"] + [
            f"n{n}[t] = tanh({affine('n', 'i', x)} + r{n}[t] * ({affine('n', 'h', h)}))",
            f"h{n}[t] = (1 - z{n}[t]) * n{n}[t] + z{n}[t] * {h}"]
    return [f"h{n}[t] = {cfg.nonlinearity}({affine('h', 'i', x)} + {affine('h', 'h', h)})"]


# ------------------------------------------------------------ from PyTorch

def from_torch(module, layer: int | None = None) -> tuple[Recurrence, dict]:
    """(rec, params) computing what `module` (nn.RNN, nn.LSTM or nn.GRU)
    computes in eval mode; `layer=k`: its layer k alone, whose input is layer
    k-1's output.  The model is time-major, like PyTorch's default: with
    batch_first=True, transpose x.  Params keep the module's dtype."""
    torch = require("torch", "torch", "uf.from_torch")
    cfg = _config_of_module(torch, module, layer)
    rec = parse(model_text(cfg), file=f"<from_torch {cfg.describe()}>", name=f"torch_{cfg.kind.lower()}")
    state = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
    return rec, _unpacked(cfg, state)


def _config_of_module(torch, module, layer) -> TorchConfig:
    if not isinstance(module, torch.nn.RNNBase) or module.mode not in MODES:
        raise UnfoldError(f"uf.from_torch takes an nn.RNN, nn.LSTM or nn.GRU, not {type(module).__name__}")
    if getattr(module, "proj_size", 0):
        raise UnfoldError(f"uf.from_torch: an LSTM with proj_size={module.proj_size} is not supported; "
                          "expected proj_size=0")
    dtype = next(module.parameters()).dtype
    if dtype not in (torch.float32, torch.float64):
        raise UnfoldError(f"uf.from_torch: the module's parameters are {dtype}; expected float32 or float64 "
                          "(module.float() or module.double())")
    kind, act = MODES[module.mode]
    cfg = TorchConfig(kind, module.input_size, module.hidden_size, tuple(range(module.num_layers)),
                      module.bidirectional, module.bias, act)
    if layer is None:
        if cfg.bidirectional and len(cfg.layers) > 1:
            raise UnfoldError(f"{cfg.describe()} is not one unfold model: a forward state may not read a "
                              "backward one, and layer 1 reads both directions of layer 0; import it layer "
                              "by layer, from_torch(module, layer=k), feeding layer k the concatenation of "
                              "layer k-1's h_l{k-1} and h_l{k-1}_reverse")
        return cfg
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < module.num_layers:
        raise UnfoldError(f"layer={layer!r}: expected a layer index 0..{module.num_layers - 1}")
    width = cfg.input_size if layer == 0 else cfg.hidden_size * len(cfg.suffixes)
    return replace(cfg, input_size=width, layers=(layer,))


def _unpacked(cfg: TorchConfig, state: dict) -> dict[str, np.ndarray]:
    """The model's params from PyTorch's packed tensors (gates stacked by rows)."""
    H, params = cfg.hidden_size, {}
    for l, s in cfg.units():
        for side, (w, b) in (("i", ("weight_ih", "bias_ih")), ("h", ("weight_hh", "bias_hh"))):
            for k, g in enumerate(GATES[cfg.kind]):
                rows = slice(k * H, (k + 1) * H)
                params[f"W_{side}{g}_l{l}{s}"] = np.ascontiguousarray(state[f"{w}_l{l}{s}"][rows])
                if cfg.bias:
                    params[f"b_{side}{g}_l{l}{s}"] = np.ascontiguousarray(state[f"{b}_l{l}{s}"][rows])
    return params


# ------------------------------------------------------------ to PyTorch

def to_torch_state_dict(rec: Recurrence, params: dict) -> dict:
    """A state dict for the PyTorch module `rec` computes: a model made by
    `from_torch` (for all its layers, or the one it holds: the layers' dicts
    merge), or the zoo's lstm/gru (one bias per gate: it goes to bias_ih,
    zeros to bias_hh, but GRU's bhn to bias_hh, where PyTorch applies it)."""
    torch = require("torch", "torch", "uf.to_torch_state_dict")
    missing = sorted({s.name for s in rec.of_role(Role.PARAM)} - set(params or {}))
    if missing:
        raise UnfoldError(f"to_torch_state_dict: no value for param `{missing[0]}` of `{rec.name}`")
    cfg = _config_of_model(rec)
    if cfg is not None:
        packed = _packed(cfg, params)
    else:
        packed = _zoo_packed(rec, params)
    return {k: torch.from_numpy(np.ascontiguousarray(v).copy()) for k, v in packed.items()}


def _config_of_model(rec: Recurrence) -> TorchConfig | None:
    """The module a model from `from_torch` came from, read off its param names
    and checked by writing that module's model again: None if not such a model."""
    found = [m for m in (_WEIGHT.match(s.name) for s in rec.of_role(Role.PARAM)) if m]
    gates = {m[2] for m in found}
    kind = next((k for k, g in GATES.items() if set(g) == gates), None)
    if kind is None or "x" not in rec.symbols:
        return None
    layers = tuple(sorted({int(m[3]) for m in found}))
    first = f"W_h{GATES[kind][0]}_l{layers[0]}"
    cfg = TorchConfig(kind, rec.symbols["x"].shape[0], rec.symbols[first].shape[0], layers,
                      any(m[4] for m in found), any(s.name.startswith("b_") for s in rec.of_role(Role.PARAM)))
    for act in ("tanh", "relu") if kind == "RNN" else ("tanh",):
        if canonical(parse(model_text(replace(cfg, nonlinearity=act)))) == canonical(rec):
            return replace(cfg, nonlinearity=act)
    return None


def _packed(cfg: TorchConfig, params: dict) -> dict[str, np.ndarray]:
    """PyTorch's packed tensors from the model's params, in PyTorch's order."""
    out = {}
    for l, s in cfg.units():
        for name, side in (("weight_ih", "W_i"), ("weight_hh", "W_h"), ("bias_ih", "b_i"), ("bias_hh", "b_h")):
            if cfg.bias or name.startswith("weight"):
                out[f"{name}_l{l}{s}"] = np.concatenate([params[f"{side}{g}_l{l}{s}"] for g in GATES[cfg.kind]])
    return out


def _zoo_packed(rec: Recurrence, params: dict) -> dict[str, np.ndarray]:
    """The zoo's lstm or gru (any H, D) as nn.LSTM / nn.GRU weights."""
    for kind, gates in (("lstm", "ifgo"), ("gru", "rzn")):
        zoo = load(zoo_path(kind))
        if set(rec.dims) == set(zoo.dims) and canonical(zoo.bind(**rec.dims)) == canonical(rec):
            W, U, b = (np.concatenate([params[p + g] for g in gates]) for p in ("W", "U", "b"))
            b_hh = np.zeros_like(b)
            if kind == "gru":
                b_hh[2 * len(params["bhn"]):] = params["bhn"]
            return {"weight_ih_l0": W, "weight_hh_l0": U, "bias_ih_l0": b, "bias_hh_l0": b_hh}
    raise UnfoldError(f"to_torch_state_dict: `{rec.name}` is not a PyTorch module's model; expected a model "
                      "from uf.from_torch (PyTorch's equations and names), or the zoo's lstm or gru")
