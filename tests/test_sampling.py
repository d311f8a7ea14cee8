import pytest
import torch

from rnnviz.errors import RnnvizError
from rnnviz.model.sampling import sample

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny step loops: one torch thread (see conftest)


def test_same_seed_same_text_and_length(make_model):
    m = make_model()
    a, b = sample(m, 80, prime="Be", seed=3), sample(m, 80, prime="Be", seed=3)
    assert a == b and len(a) == 80
    assert sample(m, 80, prime="Be", seed=4) != a


def test_top_k_1_is_greedy(make_model):
    m = make_model()
    out = sample(m, 20, prime="F", top_k=1, seed=0)
    state, expected, x = m.init_state(1), [], torch.tensor(m.vocab.encode("F"))
    with torch.no_grad():
        for _ in range(20):
            logits, state = m.step(x, state)
            x = logits.argmax(-1)
            expected.append(int(x))
    assert out == m.vocab.decode(expected)


def test_clamped_sampling_changes_text_and_is_reproducible(make_model):
    m = make_model(hidden=16)
    free = sample(m, 200, seed=1)
    clamped = sample(m, 200, seed=1, clamp={"1:h:0": 5.0, "1:h:1": -5.0})
    assert clamped != free
    assert clamped == sample(m, 200, seed=1, clamp={"1:h:0": 5.0, "1:h:1": -5.0})


def test_sampling_errors(make_model):
    m = make_model()
    with pytest.raises(RnnvizError, match="temperature must be > 0"):
        sample(m, 10, temperature=0)
    with pytest.raises(RnnvizError, match="top-k must be from 1"):
        sample(m, 10, top_k=0)
    with pytest.raises(RnnvizError, match="not in the model's vocabulary"):
        sample(m, 10, prime="Zebra#")
    with pytest.raises(RnnvizError, match="a lstm has no kind 'z'"):
        sample(m, 10, clamp={"0:z:1": 1.0})
