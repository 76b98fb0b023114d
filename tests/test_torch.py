"""The PyTorch bridge (unfold.bridges.torch, .weights), against PyTorch itself:
an unfold LSTM under an nn.Linear head trains as nn.LSTM does (float64, 1e-9),
torch.autograd.gradcheck passes through the compiled BPTT, and from_torch /
to_torch_state_dict carry nn.RNN, nn.LSTM and nn.GRU weights both ways with
outputs equal to PyTorch's.  Weight-import tests run on the numpy target (exact,
nothing to compile); the gradient tests on the compiled CPU kernels.  Skipped
without torch, except the error that names the missing extra."""
import copy
import sys

import numpy as np
import pytest

import unfold as uf
from unfold.bridges.torch import to_torch
from unfold.bridges.weights import from_torch, to_torch_state_dict

try:
    import torch
except ImportError:
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="needs the torch extra (pip install 'unfold-rnn[torch]')")

T, B, D, H, K = 5, 3, 4, 6, 2


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


def randn(*shape, grad=False):
    return torch.randn(*shape, dtype=torch.float64).requires_grad_(grad)


def pytorch_output(out: dict, module) -> np.ndarray:
    """PyTorch's `output` from unfold's states: the last layer's h, both directions side by side."""
    top = f"h_l{module.num_layers - 1}"
    return np.concatenate([out[top]] + ([out[top + "_reverse"]] if module.bidirectional else []), axis=-1)


# ------------------------------------------------------------ training against nn.LSTM

@needs_torch
def test_torch_lstm_with_a_linear_head_trains_like_nn_lstm(cache):
    """Same loss, same gradients (params, head, x), same params after SGD steps: float64, 1e-9."""
    torch.manual_seed(0)
    native, head = torch.nn.LSTM(D, H).double(), torch.nn.Linear(H, K).double()
    rec, params = from_torch(native)
    ours, our_head = to_torch(rec, params, dtype=np.float64, cache_dir=cache), copy.deepcopy(head)
    opt = torch.optim.SGD([*native.parameters(), *head.parameters()], lr=0.5)
    our_opt = torch.optim.SGD([*ours.parameters(), *our_head.parameters()], lr=0.5)
    for _ in range(3):
        x, y = randn(T, B, D, grad=True), randn(T, B, K)
        x2 = x.detach().clone().requires_grad_()
        for o in (opt, our_opt):
            o.zero_grad()
        want = torch.nn.functional.mse_loss(head(native(x)[0]), y)
        got = torch.nn.functional.mse_loss(our_head(ours(x2)["h_l0"]), y)
        want.backward()
        got.backward()
        assert float(got.detach()) == pytest.approx(float(want.detach()), rel=1e-12)
        np.testing.assert_allclose(x2.grad, x.grad, rtol=1e-9, atol=1e-12)
        grads = to_torch_state_dict(rec, {k: p.grad.numpy() for k, p in ours.params.items()})
        for name, p in native.named_parameters():
            np.testing.assert_allclose(grads[name], p.grad, rtol=1e-9, atol=1e-12, err_msg=name)
        for a, b in zip(our_head.parameters(), head.parameters()):
            np.testing.assert_allclose(a.grad, b.grad, rtol=1e-9, atol=1e-12)
        opt.step()
        our_opt.step()
    final = to_torch_state_dict(rec, {k: p.detach().numpy() for k, p in ours.params.items()})
    for name, p in native.named_parameters():
        np.testing.assert_allclose(final[name], p.detach(), rtol=1e-9, atol=1e-12, err_msg=name)


@needs_torch
def test_torch_gradcheck_through_the_compiled_bptt(cache):
    """Params, inputs and both initial states, in float64 against finite differences."""
    torch.manual_seed(1)
    rec = uf.load(uf.zoo_path("lstm")).bind(H=3, D=2)
    module = to_torch(rec, dtype=np.float64, cache_dir=cache)
    names = [f"params.{k}" for k in module.params]

    def f(x, h0, c0, *ps):
        out = torch.func.functional_call(module, dict(zip(names, ps)), (x,), {"init": {"h": h0, "c": c0}})
        return out["h"], out["c"]

    args = (randn(4, 2, 2, grad=True), randn(2, 3, grad=True), randn(2, 3, grad=True),
            *[p.detach().clone().requires_grad_() for p in module.params.values()])
    assert torch.autograd.gradcheck(f, args)


# ------------------------------------------------------------ weights from and to PyTorch

MODULES = {
    "rnn-tanh": lambda: torch.nn.RNN(D, H),
    "rnn-relu-nobias-2layers": lambda: torch.nn.RNN(D, H, num_layers=2, nonlinearity="relu", bias=False),
    "lstm": lambda: torch.nn.LSTM(D, H),
    "lstm-2layers": lambda: torch.nn.LSTM(D, H, num_layers=2),
    "lstm-bidirectional": lambda: torch.nn.LSTM(D, H, bidirectional=True),
    "gru": lambda: torch.nn.GRU(D, H),
    "gru-2layers": lambda: torch.nn.GRU(D, H, num_layers=2),
    "gru-bidirectional": lambda: torch.nn.GRU(D, H, bidirectional=True),
}


@needs_torch
@pytest.mark.parametrize("name", MODULES)
def test_from_torch_outputs_and_final_states_equal_pytorch(name, cache):
    torch.manual_seed(2)
    module = MODULES[name]().double()
    rec, params = from_torch(module)
    x = randn(T, B, D)
    out, final = uf.compile(rec, target="numpy", dtype=np.float64, cache_dir=cache)(
        params, {"x": x.numpy()}, return_state=True)
    want, h_n = module(x)
    np.testing.assert_allclose(pytorch_output(out, module), want.detach(), rtol=1e-12, atol=1e-14)
    h_n, c_n = h_n if isinstance(h_n, tuple) else (h_n, None)
    for k, (l, s) in enumerate((l, s) for l in range(module.num_layers) for s in ("", "_reverse")[:1 + module.bidirectional]):
        np.testing.assert_allclose(final[f"h_l{l}{s}"], h_n[k].detach(), rtol=1e-12, atol=1e-14)
        if c_n is not None:
            np.testing.assert_allclose(final[f"c_l{l}{s}"], c_n[k].detach(), rtol=1e-12, atol=1e-14)


@needs_torch
@pytest.mark.parametrize("name", MODULES)
def test_to_torch_state_dict_round_trips_exactly(name):
    torch.manual_seed(3)
    module = MODULES[name]()
    rec, params = from_torch(module)
    assert all(p.dtype == np.float32 for p in params.values())   # the module's dtype
    fresh = MODULES[name]()
    fresh.load_state_dict(to_torch_state_dict(rec, params))       # strict: every key, no other
    for (k, a), b in zip(module.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), k


@needs_torch
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_from_torch_stacked_bidirectional_layer_by_layer(kind, cache):
    """Not one model (a forward state may not read a backward one): a clear error,
    and its layers, chained, compute PyTorch's output."""
    torch.manual_seed(4)
    module = getattr(torch.nn, kind)(D, H, num_layers=2, bidirectional=True).double()
    with pytest.raises(uf.UnfoldError, match="layer by layer"):
        from_torch(module)
    x, merged = randn(T, B, D), {}
    h = x.numpy()
    for k in range(2):
        rec, params = from_torch(module, layer=k)
        out = uf.compile(rec, target="numpy", dtype=np.float64, cache_dir=cache)(params, {"x": h})
        h = np.ascontiguousarray(np.concatenate([out[f"h_l{k}"], out[f"h_l{k}_reverse"]], axis=-1))
        merged.update(to_torch_state_dict(rec, params))
    np.testing.assert_allclose(h, module(x)[0].detach(), rtol=1e-12, atol=1e-14)
    assert merged.keys() == module.state_dict().keys()


@needs_torch
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_to_torch_state_dict_of_the_zoo_models(kind, cache):
    """The zoo's lstm and gru (one bias per gate) load into nn.LSTM / nn.GRU."""
    rec = uf.load(uf.zoo_path(kind)).bind(H=H, D=D)
    params = rec.init_params(seed=5)
    module = getattr(torch.nn, kind.upper())(D, H).double()
    module.load_state_dict(to_torch_state_dict(rec, params))
    x = randn(T, B, D)
    out = uf.compile(rec, target="numpy", dtype=np.float64, cache_dir=cache)(params, {"x": x.numpy()})
    np.testing.assert_allclose(out["h"], module(x)[0].detach(), rtol=1e-12, atol=1e-14)


@needs_torch
def test_weights_bad_arguments_are_clear_errors():
    with pytest.raises(uf.UnfoldError, match="nn.RNN, nn.LSTM or nn.GRU"):
        from_torch(torch.nn.Linear(2, 3))
    with pytest.raises(uf.UnfoldError, match="proj_size"):
        from_torch(torch.nn.LSTM(D, H, proj_size=2))
    with pytest.raises(uf.UnfoldError, match="layer=2"):
        from_torch(torch.nn.GRU(D, H, num_layers=2), layer=2)
    with pytest.raises(uf.UnfoldError, match="float32 or float64"):
        from_torch(torch.nn.GRU(D, H).half())
    rec = uf.load(uf.zoo_path("elman")).bind(H=H, D=D)
    with pytest.raises(uf.UnfoldError, match="not a PyTorch module's model"):
        to_torch_state_dict(rec, rec.init_params())
    with pytest.raises(uf.UnfoldError, match="no value for param"):
        to_torch_state_dict(rec, {})


# ------------------------------------------------------------ the module itself

@needs_torch
def test_to_torch_module_returns_what_the_compiled_function_computes(cache):
    """One state: a tensor; outputs=: any names; lengths, init and return_state; float32 by default."""
    rec = uf.load(uf.zoo_path("gru")).bind(H=H, D=D)
    params = rec.init_params(seed=6, dtype=np.float32)
    fn = uf.compile(rec, target="numpy", dtype=np.float32, cache_dir=cache)
    module = to_torch(rec, params, target="numpy", cache_dir=cache)
    x, h0, lengths = torch.randn(T, B, D), torch.randn(B, H), [5, 2, 4]
    want = fn(params, {"x": x.numpy()}, init={"h": h0.numpy()}, lengths=lengths)
    h, final = module(x, init={"h": h0}, lengths=lengths, return_state=True)
    assert h.dtype == torch.float32 and h.shape == (T, B, H)
    np.testing.assert_array_equal(h.detach(), want["h"])
    np.testing.assert_array_equal(final["h"].detach(), want["h"][np.array(lengths) - 1, np.arange(B)])
    gates = to_torch(rec, params, target="numpy", outputs=["r", "z"], cache_dir=cache)(x)
    np.testing.assert_array_equal(gates["z"].detach(), fn(params, {"x": x.numpy()})["z"])
    assert to_torch(rec, params, target="numpy", outputs="n", cache_dir=cache)(x).shape == (T, B, H)


@needs_torch
def test_to_torch_module_follows_its_dtype_and_copies(cache):
    rec = uf.load(uf.zoo_path("gru")).bind(H=H, D=D)
    torch.manual_seed(7)
    a = to_torch(rec, target="numpy", cache_dir=cache)
    torch.manual_seed(7)
    b = to_torch(rec, target="numpy", cache_dir=cache)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))   # torch's seed decides
    x = torch.randn(T, B, D)
    h32 = a(x)
    h64 = a.double()(x.double())            # recompiled for float64; x cast too
    assert h64.dtype == torch.float64
    np.testing.assert_allclose(h64.detach(), h32.detach(), rtol=1e-5, atol=1e-6)
    twin = copy.deepcopy(a)
    assert torch.equal(twin(x.double()), h64)


@needs_torch
def test_to_torch_bad_arguments_are_clear_errors(cache):
    rec = uf.load(uf.zoo_path("gru")).bind(H=H, D=D)
    params = rec.init_params()
    with pytest.raises(uf.UnfoldError, match="missing Wr"):
        to_torch(rec, {k: v for k, v in params.items() if k != "Wr"})
    with pytest.raises(uf.UnfoldError, match="unknown extra"):
        to_torch(rec, dict(params, extra=np.zeros(2)))
    with pytest.raises(uf.UnfoldError, match=r"shape \[6, 6\]; expected \[6, 4\]"):
        to_torch(rec, dict(params, Wr=np.zeros((H, H))))
    with pytest.raises(uf.UnfoldError, match="no output"):
        to_torch(rec, params, outputs=["nope"])
    with pytest.raises(uf.UnfoldError, match="recurrence"):
        to_torch("gru.rnn")
    with pytest.raises(uf.UnfoldError, match="dtype"):
        to_torch(rec, params, dtype=np.int32)
    with pytest.raises(uf.UnfoldError, match="unknown target"):
        to_torch(rec, params, target="tpu")
    module = to_torch(rec, params, target="numpy", cache_dir=cache)
    with pytest.raises(uf.InputError, match="expected"):
        module(torch.randn(T, B, D + 1))
    with pytest.raises(uf.UnfoldError, match="unknown input"):
        module({"u": torch.randn(T, B, D)})


def test_to_torch_missing_extra_names_it(monkeypatch):
    """Runs with or without torch: `import torch` is made to fail."""
    monkeypatch.setitem(sys.modules, "torch", None)
    rec = uf.load(uf.zoo_path("gru")).bind(H=H, D=D)
    for call in (lambda: to_torch(rec), lambda: from_torch(None), lambda: to_torch_state_dict(rec, {})):
        with pytest.raises(uf.UnfoldError, match=r"needs PyTorch.*unfold-rnn\[torch\]"):
            call()
