"""model/sampling.py: the numpy sampler both engines share."""

import numpy as np
import pytest
import torch

from model.sampling import (
    TOP_K_GROUPS,
    SamplingParams,
    _inverse_cdf,
    forbid_eos,
    new_generator,
    sample_next_token,
    top_k_indices,
)


def test_sample_top_k_one_equals_greedy():
    logits = np.random.default_rng(0).standard_normal((5, 100)).astype(np.float32)
    got = sample_next_token(logits, SamplingParams(temperature=2.0, top_k=1), new_generator(0))
    assert got.tolist() == logits.argmax(-1).tolist()
    assert sample_next_token(logits, SamplingParams(temperature=0.0)).tolist() == logits.argmax(-1).tolist()


def test_sample_top_k_and_top_p_keep_only_the_head():
    logits = np.tile(np.array([[5.0, 4.0, 3.0, -10.0, -10.0]], np.float32), (200, 1))
    gen = new_generator(0)
    top2 = sample_next_token(logits, SamplingParams(temperature=1.0, top_k=2, top_p=1.0), gen)
    assert set(top2.tolist()) == {0, 1}
    # probs are ~0.665, 0.245, 0.090: top_p 0.5 keeps only the first, 0.8 the first two
    assert set(
        sample_next_token(logits, SamplingParams(temperature=1.0, top_k=0, top_p=0.5), gen).tolist()
    ) == {0}
    assert set(
        sample_next_token(logits, SamplingParams(temperature=1.0, top_k=0, top_p=0.8), gen).tolist()
    ) == {0, 1}


def test_sample_frequencies_follow_the_softmax():
    """20,000 draws at temperature 1 over three logits: each token's share within 0.02 of softmax."""
    logits = np.tile(np.array([[2.0, 1.0, 0.0]], np.float32), (20_000, 1))
    drawn = sample_next_token(logits, SamplingParams(temperature=1.0, top_k=0, top_p=1.0), new_generator(1))
    expected = np.exp([2.0, 1.0, 0.0]) / np.exp([2.0, 1.0, 0.0]).sum()
    assert np.abs(np.bincount(drawn, minlength=3) / len(drawn) - expected).max() < 0.02


def test_sample_per_row_params_and_generators():
    logits = np.random.default_rng(1).standard_normal((2, 50)).astype(np.float32)
    params = [SamplingParams(temperature=0.0), SamplingParams(temperature=1.0, seed=3)]
    a = sample_next_token(logits, params, [None, new_generator(3)])
    b = sample_next_token(logits, params, [None, new_generator(3)])
    assert a.tolist() == b.tolist() and a[0] == logits[0].argmax()
    with pytest.raises(ValueError):
        sample_next_token(logits, params[:1], [None, new_generator(3)])


def test_a_seeded_row_draws_the_same_alone_or_in_a_batch():
    logits = np.random.default_rng(2).standard_normal((4, 60)).astype(np.float32)
    params = SamplingParams(temperature=1.0, top_k=20, seed=9)
    alone = sample_next_token(logits[2:3], params, [new_generator(9)])
    batch = sample_next_token(logits, params, [new_generator(i) for i in (5, 6, 9, 7)])
    assert batch[2] == alone[0]


def test_torch_logits_are_accepted():
    logits = torch.randn(3, 40)
    assert sample_next_token(logits, SamplingParams(temperature=0)).tolist() == logits.argmax(-1).tolist()


def test_forbid_eos_only_in_marked_rows():
    logits = np.zeros((2, 5), np.float32)
    logits[:, 3] = 9.0
    out = forbid_eos(logits, 3, [True, False])
    assert out[0, 3] == -np.inf and out[1, 3] == 9.0 and logits[0, 3] == 9.0  # the input is left alone
    assert forbid_eos(logits, 3, [False, False])[0, 3] == 9.0


def test_the_blocked_inverse_cdf_is_searchsorted_on_the_running_sum():
    """Exact where the sums are exact, and at least as near float64's answer as a float32 cumsum elsewhere."""
    V = 16387  # not a multiple of the block: the last block is padded
    one_hot = np.zeros((3, V), np.float32)
    one_hot[[0, 1, 2], [0, 5000, V - 1]] = 1.0
    assert _inverse_cdf(one_hot, np.array([0.5, 1e-9, 1.0])).tolist() == [0, 5000, V - 1]
    uniform = np.ones((4, V), np.float32)
    u = np.array([0.0, 0.25, 0.5, 0.999])
    assert _inverse_cdf(uniform, u).tolist() == [0, *np.ceil(u[1:] * V - 1).astype(int).tolist()]
    rng = np.random.default_rng(0)
    weights = np.exp(rng.standard_normal((8, V)).astype(np.float32) * 3)
    misses = {"blocked": 0, "float32 cumsum": 0}
    for _ in range(200):
        u = rng.random(8)
        exact = np.cumsum(weights.astype(np.float64), -1)
        want = [np.searchsorted(exact[r], u[r] * exact[r, -1], side="left") for r in range(8)]
        plain = np.cumsum(weights, -1)
        misses["float32 cumsum"] += sum(
            np.searchsorted(plain[r], u[r] * plain[r, -1], side="left") != want[r] for r in range(8)
        )
        misses["blocked"] += int((_inverse_cdf(weights, u) != want).sum())
    assert misses["blocked"] <= misses["float32 cumsum"] and misses["blocked"] <= 4  # of 1,600 draws


def test_top_k_indices_are_each_rows_k_best_largest_first_ties_in_index_order():
    """The floor from the groups' maxima never drops one of the k best: the same indices, in the same
    order, as a stable sort of every row, with ties, -inf entries, a vocabulary that is not a multiple of
    the groups, and every k up to past the groups (a sort then)."""
    rng = np.random.default_rng(3)
    V = 16387
    x = (rng.standard_normal((6, V)) * 3).astype(np.float32)
    x[1] = np.round(x[1])  # thousands of ties
    x[2, rng.integers(0, V, 2000)] = -np.inf  # a loop guard's and the eos ban's marks
    x[3, -3:] = 50.0  # the best three in the tail past the last full run of groups
    x[4] = 0.0  # every entry tied
    x[5, rng.integers(0, V, 300)] = np.nan  # a broken model's logits: ranked as a sort ranks them, no crash
    for k in (1, 2, 3, 50, 200, TOP_K_GROUPS, TOP_K_GROUPS + 1):
        want = np.argsort(-x, axis=-1, kind="stable")[:, :k]
        assert (top_k_indices(x, k) == want).all(), k
    small = rng.standard_normal((3, 100)).astype(np.float32)  # fewer entries than groups: sorted
    assert (top_k_indices(small, 7) == np.argsort(-small, axis=-1, kind="stable")[:, :7]).all()


def test_top_k_sampling_over_a_full_vocabulary_follows_the_softmax_of_the_k_best():
    """20,000 draws from one 16,387-logit row at top_k 5: only the 5 best, each within 0.02 of its share
    of their softmax (the group-maxima path of top_k_indices, which a 5-logit test never takes)."""
    rng = np.random.default_rng(4)
    row = (rng.standard_normal(16387) * 0.5 - 2.0).astype(np.float32)
    best = rng.choice(16387, 5, replace=False)
    row[best] = [5.0, 4.5, 4.0, 3.5, 3.0]  # ahead of the rest, whose mass would show
    drawn = sample_next_token(
        np.tile(row, (20_000, 1)), SamplingParams(temperature=1.0, top_k=5, top_p=1.0), new_generator(5)
    )
    assert set(drawn.tolist()) <= set(best.tolist())
    expected = np.exp(row[best]) / np.exp(row[best]).sum()
    shares = np.array([(drawn == i).mean() for i in best])
    assert np.abs(shares - expected).max() < 0.02
