"""The NumPy min-char-rnn against torch autograd, finite differences, hand-computed Adagrad and itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rnnviz.errors import RnnvizError
from rnnviz.model import reference as R

H = 16


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """Largest elementwise |a - b| / (|a| + |b|); entries that are both exactly 0 count as equal."""
    d = np.abs(a) + np.abs(b)
    return float((np.abs(a - b) / np.where(d > 0, d, 1.0)).max())


def torch_grads(model) -> dict[str, np.ndarray]:
    w_ih, w_hh, b_ih, _ = model.layer_weights(0)
    g = {"W_xh": w_ih, "W_hh": w_hh, "b_h": b_ih, "W_hy": model.head.weight, "b_y": model.head.bias}
    return {k: v.grad.numpy() for k, v in g.items()}


@pytest.fixture
def rnn64(make_model):
    """A float64 1-layer vanilla CharRNN with weights large enough (std 0.5) that tanh is non-linear."""
    model = make_model("rnn", 1, H).double()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.5)
    return model


def batch(V: int, B: int | None, T: int = 12, seed: int = 0):
    """Random inputs/targets (B, T) or (T,) and a nonzero initial state (B, H) or (H,)."""
    rng = np.random.default_rng(seed)
    shape = (T + 1,) if B is None else (B, T + 1)
    ids = rng.integers(V, size=shape)
    h0 = rng.standard_normal(H if B is None else (B, H)) * 0.5
    return ids[..., :-1], ids[..., 1:], h0


@pytest.mark.parametrize("B", [None, 3])
def test_gradients_equal_torch_autograd(rnn64, B):
    V = rnn64.config.vocab_size
    x, y, h0 = batch(V, B)
    params = R.params_from_torch(rnn64)
    loss, cache = R.forward(params, x, y, h0)
    grads, h_last = R.backward(params, cache)

    xt, yt, ht = (torch.from_numpy(np.atleast_2d(a)) for a in (x, y, h0))
    logits, h_torch = rnn64(xt, ht[None])
    loss_torch = F.cross_entropy(logits.reshape(-1, V), yt.reshape(-1), reduction="sum")
    loss_torch.backward()

    assert loss == pytest.approx(loss_torch.item(), rel=1e-12)
    assert h_last.shape == h0.shape
    assert np.abs(h_last - h_torch[0].detach().numpy().reshape(h0.shape)).max() < 1e-12
    ours, theirs = dict(grads.items()), torch_grads(rnn64)
    for name in ours:
        assert ours[name].shape == theirs[name].shape
        assert np.abs(ours[name]).max() > 0.1, name  # a real, non-vanishing gradient is compared
        assert rel_err(ours[name], theirs[name]) < 1e-6, name
    # torch's two biases add up, so each gets exactly the gradient of our single b_h
    np.testing.assert_allclose(rnn64.rnn.bias_hh_l0.grad.numpy(), ours["b_h"], rtol=1e-9, atol=0)
    # columns of characters that never occur as input get no gradient at all
    unused = np.setdiff1d(np.arange(V), x)
    assert unused.size and not ours["W_xh"][:, unused].any()


def test_params_round_trip_through_torch(rnn64, make_model):
    params = R.params_from_torch(rnn64)
    np.testing.assert_array_equal(
        params.b_h, (rnn64.rnn.bias_ih_l0 + rnn64.rnn.bias_hh_l0).detach().numpy()
    )
    fresh = make_model("rnn", 1, H, seed=7).double()
    assert R.params_to_torch(params, fresh) is fresh
    assert not fresh.rnn.bias_hh_l0.any()
    back = R.params_from_torch(fresh)
    for (name, a), (_, b) in zip(params.items(), back.items(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)
    # same function: both torch models give the same logits
    x = torch.arange(rnn64.config.vocab_size)[None]
    torch.testing.assert_close(fresh(x)[0], rnn64(x)[0], rtol=1e-12, atol=1e-12)


def test_conversions_reject_other_models(make_model):
    with pytest.raises(RnnvizError, match="1-layer vanilla RNN; the model is 2-layer lstm"):
        R.params_from_torch(make_model("lstm", 2, H))
    small = R.Params.init(5, H, np.random.default_rng(0))
    with pytest.raises(RnnvizError, match=r"W_xh has shape \(16, 5\), the model needs \(16, "):
        R.params_to_torch(small, make_model("rnn", 1, H))


@pytest.mark.parametrize("B", [None, 3])
def test_numerical_gradient_check_passes(B):
    V = 11
    x, y, h0 = batch(V, B)
    # std 0.1, not min-char-rnn's 0.01: there some gradient entries are ~1e-6 and the round-off in the
    # finite difference (~1e-10 absolute) alone makes their relative error ~1e-4.
    params = R.Params.init(V, H, np.random.default_rng(1), scale=0.1)
    before = params.map(np.copy)
    errs = R.numerical_gradient_check(params, x, y, h0, np.random.default_rng(2), checks=20)
    assert set(errs) == {"W_xh", "W_hh", "b_h", "W_hy", "b_y"}
    assert max(errs.values()) < 1e-5, errs
    for (name, a), (_, b) in zip(params.items(), before.items(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=f"{name} was changed by the check")


def test_numerical_gradient_check_catches_a_wrong_gradient(monkeypatch):
    x, y, h0 = batch(11, 2)
    params = R.Params.init(11, H, np.random.default_rng(1), scale=0.1)
    right = R.backward

    def off_by_one_percent(p, cache):
        grads, h = right(p, cache)
        grads.W_hh = grads.W_hh * 1.01
        return grads, h

    monkeypatch.setattr(R, "backward", off_by_one_percent)
    errs = R.numerical_gradient_check(params, x, y, h0, np.random.default_rng(2), checks=20)
    assert errs["W_hh"] == pytest.approx(0.01 / 2.01, rel=1e-3)  # |1.01a - a| / (|1.01a| + |a|)
    assert max(v for k, v in errs.items() if k != "W_hh") < 1e-5


def test_clip_to_exactly_plus_minus_five():
    rng = np.random.default_rng(0)
    grads = R.Params.init(7, H, rng, scale=10.0).map(lambda a: a + 3.0)  # biases 3, weights ±30
    clipped = R.clip(grads)
    for (name, g), (_, c) in zip(grads.items(), clipped.items(), strict=True):
        assert c.max() <= 5.0 and c.min() >= -5.0, name
        inside = np.abs(g) <= 5.0
        np.testing.assert_array_equal(c[inside], g[inside])  # untouched inside the range
        np.testing.assert_array_equal(c[~inside], np.sign(g[~inside]) * 5.0)
        t = torch.from_numpy(g.copy()).requires_grad_()
        t.grad = t.detach().clone()
        torch.nn.utils.clip_grad_value_([t], 5.0)
        np.testing.assert_array_equal(c, t.grad.numpy())  # the same as torch's value clipping
    assert clipped.W_hh.max() == 5.0 and clipped.W_hh.min() == -5.0
    assert np.abs(grads.W_hh).max() > 20  # the input was left as it was


def test_loss_fun_clips_backward(rnn64):
    x, y, h0 = batch(rnn64.config.vocab_size, None, T=25)
    params = R.params_from_torch(rnn64)
    loss, grads, h = R.loss_fun(params, x, y, h0)
    _, cache = R.forward(params, x, y, h0)
    raw, h_raw = R.backward(params, cache)
    assert np.abs(raw.b_h).max() > 5.0  # large weights: some raw gradient is really clipped
    for (name, g), (_, r) in zip(grads.items(), raw.items(), strict=True):
        np.testing.assert_array_equal(g, np.clip(r, -5, 5), err_msg=name)
    np.testing.assert_array_equal(h, h_raw)


def adagrad_grads(V: int, seed: int) -> R.Params:
    """Gradients spanning 1e-6 .. 5 in magnitude (where eps's placement matters, and where it doesn't)."""
    rng = np.random.default_rng(seed)
    return R.Params.init(V, H, rng, scale=1.0).map(lambda a: a * 10.0 ** rng.uniform(-6, 0.7, a.shape))


@pytest.mark.parametrize("inside", [True, False])
def test_adagrad_step_equals_hand_computation(inside):
    lr, eps = 0.1, 1e-8
    params = R.Params.init(7, H, np.random.default_rng(0), scale=0.3)
    g1, g2 = adagrad_grads(7, 1), adagrad_grads(7, 2)
    p, mem = params.map(np.copy), params.map(np.zeros_like)
    R.adagrad_update(p, g1, mem, lr, eps, eps_inside_sqrt=inside)
    R.adagrad_update(p, g2, mem, lr, eps, eps_inside_sqrt=inside)
    for name, w0 in params.items():
        a, b = getattr(g1, name), getattr(g2, name)
        if inside:  # min-char-rnn: param += -lr * dparam / np.sqrt(mem + 1e-8)
            w1 = w0 - lr * a / np.sqrt(a * a + eps)
            w2 = w1 - lr * b / np.sqrt(a * a + b * b + eps)
        else:  # torch: param -= lr * grad / (state_sum.sqrt() + eps)
            w1 = w0 - lr * a / (np.abs(a) + eps)
            w2 = w1 - lr * b / (np.sqrt(a * a + b * b) + eps)
        np.testing.assert_allclose(getattr(p, name), w2, rtol=1e-14, atol=1e-15, err_msg=name)
        np.testing.assert_allclose(getattr(mem, name), a * a + b * b, rtol=1e-15, err_msg=name)


def test_adagrad_matches_torch_optim(rnn64):
    lr, eps = 0.1, 1e-8
    V = rnn64.config.vocab_size
    start = R.params_from_torch(rnn64)
    R.params_to_torch(start, rnn64)  # all of b_h in bias_ih, bias_hh = 0
    ours, mem = start.map(np.copy), start.map(np.zeros_like)
    opt = torch.optim.Adagrad(rnn64.parameters(), lr=lr, eps=eps)
    w_ih, w_hh, b_ih, b_hh = rnn64.layer_weights(0)
    dest = {"W_xh": w_ih, "W_hh": w_hh, "W_hy": rnn64.head.weight, "b_y": rnn64.head.bias}
    for step in range(3):
        grads = adagrad_grads(V, 10 + step)
        for name, t in dest.items():
            t.grad = torch.from_numpy(getattr(grads, name).copy())
        b_ih.grad, b_hh.grad = torch.from_numpy(grads.b_h.copy()), torch.from_numpy(grads.b_h.copy())
        opt.step()
        R.adagrad_update(ours, grads, mem, lr, eps, eps_inside_sqrt=False)
    for name, t in dest.items():
        np.testing.assert_allclose(t.detach().numpy(), getattr(ours, name), rtol=1e-13, atol=1e-15)
    # each torch bias takes our b_h's step, so their sum has moved twice as far as b_h
    np.testing.assert_allclose(b_ih.detach().numpy(), ours.b_h, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(b_hh.detach().numpy(), ours.b_h - start.b_h, rtol=1e-12, atol=1e-15)


def test_adagrad_eps_placement_matters_only_for_tiny_gradients():
    params = R.Params.init(7, H, np.random.default_rng(0), scale=0.3)
    grads = adagrad_grads(7, 1)
    inside, outside = params.map(np.copy), params.map(np.copy)
    R.adagrad_update(inside, grads, params.map(np.zeros_like))  # min-char-rnn: g / sqrt(g² + 1e-8)
    R.adagrad_update(outside, grads, params.map(np.zeros_like), eps_inside_sqrt=False)  # g / (|g| + 1e-8)
    g = grads.W_hh
    step_in, step_out = inside.W_hh - params.W_hh, outside.W_hh - params.W_hh
    big, tiny = np.abs(g) > 0.1, (np.abs(g) > 1e-7) & (np.abs(g) < 1e-5)
    assert big.sum() > 20 and tiny.sum() > 5
    np.testing.assert_allclose(step_in[big], step_out[big], rtol=1e-6)  # both ≈ -lr · sign(g)
    assert (np.abs(step_out[tiny]) > 0.09).all()  # torch: nearly a full lr step, as |g| >> 1e-8
    assert (np.abs(step_in[tiny]) < 0.011).all()  # min-char-rnn: lr · |g| / 1e-4, a damped step


def text_ids(text: str) -> tuple[np.ndarray, list[str]]:
    chars = sorted(set(text))
    return np.array([chars.index(c) for c in text]), chars


def test_training_learns_a_repeated_text():
    text = "hello world, hello rnn! " * 20
    ids, chars = text_ids(text)
    V = len(chars)
    params, losses = R.train(ids, V, hidden=32, seq_len=25, lr=0.1, steps=300, rng=np.random.default_rng(0))
    assert losses.shape == (300,)
    assert losses[0] == pytest.approx(np.log(V), abs=0.01)  # small init: a uniform guess at first
    assert losses[-20:].mean() < 0.05 * np.log(V)
    sampled = R.sample(params, np.zeros(32), chars.index("h"), 60, np.random.default_rng(0))
    assert "h" + "".join(chars[i] for i in sampled) in text  # it continues the text it learned


def test_train_rejects_short_data():
    with pytest.raises(RnnvizError, match="data of 10 ids is too short for seq_len 25"):
        R.train(np.zeros(10, dtype=np.int64), 3)


def test_sampling_is_reproducible_and_valid():
    V = 9
    params = R.Params.init(V, H, np.random.default_rng(0), scale=0.5)
    h = np.random.default_rng(1).standard_normal(H) * 0.5
    h_before = h.copy()
    a = R.sample(params, h, 3, 200, np.random.default_rng(42))
    b = R.sample(params, h, 3, 200, np.random.default_rng(42))
    c = R.sample(params, h, 3, 200, np.random.default_rng(43))
    assert a.shape == (200,) and a.dtype == np.int64
    assert a.min() >= 0 and a.max() < V
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    np.testing.assert_array_equal(h, h_before)
    assert len(np.unique(a)) > V // 2  # spread-out weights: many characters come up


def test_sampling_draws_from_the_forward_distribution():
    V = 9
    params = R.Params.init(V, H, np.random.default_rng(0), scale=0.5)
    h = np.random.default_rng(1).standard_normal(H) * 0.5
    got = R.sample(params, h, 3, 30, np.random.default_rng(5))
    # the same draws, step by step through forward(): feed the previous sample, read its softmax
    rng, ix, want = np.random.default_rng(5), 3, []
    for _ in range(30):
        _, cache = R.forward(params, np.array([ix]), np.array([0]), h)
        h = cache.hs[-1, 0]
        ix = rng.choice(V, p=cache.ps[0, 0])
        want.append(ix)
    np.testing.assert_array_equal(got, want)


def test_bad_ids_are_clear_errors():
    params = R.Params.init(5, H, np.random.default_rng(0))
    with pytest.raises(RnnvizError, match="seed id 5 is outside the vocabulary 0..4"):
        R.sample(params, np.zeros(H), 5, 3, np.random.default_rng(0))
    with pytest.raises(RnnvizError, match="targets hold ids outside the vocabulary 0..4"):
        R.forward(params, np.array([0, 1]), np.array([1, 7]), np.zeros(H))
    with pytest.raises(RnnvizError, match=r"inputs \(1, 2\) and targets \(1, 3\) must have one"):
        R.forward(params, np.array([0, 1]), np.array([1, 2, 3]), np.zeros(H))
