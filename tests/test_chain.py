"""The first-order chain (varattn.latent.chain) against brute force over all S^T alignment paths."""

import itertools

import pytest
import torch

from varattn.latent import chain
from varattn.latent.objectives import log_marginal


def _problem(batch=2, length=4, sources=3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    emissions = torch.randn(batch, length, sources, generator=g, dtype=dtype) * 2 - 1
    scores = torch.randn(batch, length, sources, generator=g, dtype=dtype)
    jumps = torch.randn(batch, sources + 1, sources, generator=g, dtype=dtype)
    mask = torch.ones(batch, sources, dtype=torch.bool)
    steps = torch.ones(batch, length, dtype=torch.bool)
    return emissions, scores, jumps, mask, steps


def _brute_force(emissions, scores, jumps, sources_real, length_real):
    """Every path's log joint for one sequence, written directly from the definition:
    p(z_t = s | z_{t-1} = s') = softmax over the real s of scores[t, s] + jumps[s' + 1, s]."""
    def log_trans(t, prev, s):
        row = scores[t, :sources_real] + jumps[prev + 1, :sources_real]
        return row[s] - torch.logsumexp(row, 0)

    paths, values = [], []
    for path in itertools.product(range(sources_real), repeat=length_real):
        total, prev = 0.0, -1
        for t, s in enumerate(path):
            total = total + log_trans(t, prev, s) + emissions[t, s]
            prev = s
        paths.append(path)
        values.append(total)
    return paths, torch.stack(values)


def test_log_likelihood_posteriors_and_viterbi_equal_brute_force():
    emissions, scores, jumps, mask, steps = _problem()
    forward = chain.chain_forward(emissions, scores, jumps, mask, steps)
    marginals = chain.chain_marginals(emissions, scores, jumps, mask, steps)
    path, best = chain.chain_viterbi(emissions, scores, jumps, mask, steps)
    for b in range(emissions.size(0)):
        paths, values = _brute_force(emissions[b], scores[b], jumps[b], 3, 4)
        log_z = torch.logsumexp(values, 0)
        assert forward.increments[b].sum().item() == pytest.approx(log_z.item(), abs=1e-10)
        weights = (values - log_z).exp()
        expected = torch.zeros(4, 3, dtype=torch.float64)
        for p, w in zip(paths, weights):
            for t, s in enumerate(p):
                expected[t, s] += w
        assert torch.allclose(marginals[b], expected, atol=1e-10)
        winner = int(values.argmax())
        assert tuple(path[b].tolist()) == paths[winner]
        assert best[b].item() == pytest.approx(values[winner].item(), abs=1e-10)


def test_increments_are_prefix_conditionals():
    """c_t = log p(y_1..t) - log p(y_1..t-1): the brute force over the prefixes alone."""
    emissions, scores, jumps, mask, steps = _problem(batch=1, length=3)
    forward = chain.chain_forward(emissions, scores, jumps, mask, steps)
    previous = 0.0
    for t in range(1, 4):
        _, values = _brute_force(emissions[0], scores[0], jumps[0], 3, t)
        prefix = torch.logsumexp(values, 0).item()
        assert forward.increments[0, t - 1].item() == pytest.approx(prefix - previous, abs=1e-10)
        previous = prefix


def test_gradients_equal_brute_force():
    emissions, scores, jumps, mask, steps = _problem(batch=1)
    leaves = [t.clone().requires_grad_(True) for t in (emissions, scores, jumps)]
    chain.chain_forward(*leaves, mask, steps).increments.sum().backward()
    brute = [t.clone().requires_grad_(True) for t in (emissions, scores, jumps)]
    _, values = _brute_force(brute[0][0], brute[1][0], brute[2][0], 3, 4)
    torch.logsumexp(values, 0).backward()
    for mine, theirs in zip(leaves, brute):
        assert torch.allclose(mine.grad, theirs.grad, atol=1e-10)


def test_ragged_batch_equals_one_by_one():
    """Padding in positions and steps changes nothing: each row equals its own unpadded problem, and
    padded entries hold arbitrary values that never leak."""
    emissions, scores, jumps, mask, steps = _problem(batch=3, length=5, sources=4, seed=3)
    lengths, sources = [5, 3, 2], [4, 2, 3]
    for b in range(3):
        steps[b, lengths[b]:] = False
        mask[b, sources[b]:] = False
        emissions[b, :, sources[b]:] = 1e4  # garbage in padding
        scores[b, :, sources[b]:] = float("nan")
    forward = chain.chain_forward(emissions, scores, jumps, mask, steps)
    marginals = chain.chain_marginals(emissions, scores, jumps, mask, steps)
    path, best = chain.chain_viterbi(emissions, scores, jumps, mask, steps)
    assert torch.isfinite(forward.increments).all()
    for b in range(3):
        t, s = lengths[b], sources[b]
        alone_jumps = jumps[b:b + 1, : s + 1, :s]
        one = chain.chain_forward(emissions[b:b + 1, :t, :s], scores[b:b + 1, :t, :s], alone_jumps,
                                  torch.ones(1, s, dtype=torch.bool), torch.ones(1, t, dtype=torch.bool))
        assert torch.allclose(forward.increments[b, :t], one.increments[0], atol=1e-10)
        assert (forward.increments[b, t:] == 0).all()
        alone = chain.chain_marginals(emissions[b:b + 1, :t, :s], scores[b:b + 1, :t, :s], alone_jumps,
                                      torch.ones(1, s, dtype=torch.bool), torch.ones(1, t, dtype=torch.bool))
        assert torch.allclose(marginals[b, :t, :s], alone[0], atol=1e-10)
        assert marginals[b, :, s:].abs().sum() == 0 and marginals[b, t:].abs().sum() == 0
        alone_path, alone_best = chain.chain_viterbi(
            emissions[b:b + 1, :t, :s], scores[b:b + 1, :t, :s], alone_jumps,
            torch.ones(1, s, dtype=torch.bool), torch.ones(1, t, dtype=torch.bool))
        assert path[b, :t].tolist() == alone_path[0].tolist()
        assert best[b].item() == pytest.approx(alone_best[0].item(), abs=1e-10)


def test_transitions_that_ignore_the_previous_position_reproduce_the_independent_marginal():
    emissions, scores, _, mask, steps = _problem(batch=2, length=6, sources=5, seed=7)
    flat = torch.zeros(1, 6, 5, dtype=torch.float64)
    forward = chain.chain_forward(emissions, scores, flat, mask, steps)
    expected = log_marginal(emissions, scores, mask[:, None, :])
    assert torch.allclose(forward.increments, expected, atol=1e-10)


def test_kmax_with_every_position_is_exact_and_smaller_k_is_a_truncation():
    emissions, scores, jumps, mask, steps = _problem(batch=2, length=4, sources=4, seed=5)
    exact = chain.chain_forward(emissions, scores, jumps, mask, steps)
    full = chain.chain_forward(emissions, scores, jumps, mask, steps, kmax=4)
    assert torch.allclose(exact.increments, full.increments)
    one = chain.chain_forward(emissions, scores, jumps, mask, steps, kmax=1)
    # with K = 1 every step follows the predictive's argmax: the increment is that position's emission
    picked = one.predictive.argmax(-1)
    assert torch.allclose(one.increments, emissions.gather(-1, picked[..., None]).squeeze(-1))


def test_float32_and_bf16_inputs_are_stable():
    emissions, scores, jumps, mask, steps = _problem(batch=2, length=30, sources=20, seed=1)
    exact = chain.chain_forward(emissions * 20, scores * 5, jumps, mask, steps).increments
    single = chain.chain_forward(*(t.float() * k for t, k in ((emissions, 20), (scores, 5), (jumps, 1))),
                                 mask, steps).increments
    assert single.dtype == torch.float32
    assert torch.allclose(single.double(), exact, atol=1e-3)
    half = chain.chain_forward(emissions.bfloat16() * 20, scores.bfloat16() * 5, jumps.bfloat16(), mask,
                               steps).increments
    assert half.dtype == torch.float32 and torch.isfinite(half).all()


def test_step_prior_equals_the_forward_predictive():
    emissions, scores, jumps, mask, steps = _problem(batch=2, length=4, sources=3, seed=9)
    forward = chain.chain_forward(emissions, scores, jumps, mask, steps)
    filtered = None
    for t in range(4):
        prior = chain.chain_step_prior(scores[:, t], jumps, mask, filtered)
        assert torch.allclose(prior, forward.predictive[:, t], atol=1e-12)
        _, filtered = chain.chain_update(prior, emissions[:, t])


def test_jump_buckets():
    buckets = chain.jump_buckets(4, 2)
    assert buckets.shape == (5, 4)
    # from the start (s' = -1) to s = 0 is a jump of +1; from s' = 3 to s = 0 is -3, clipped to -2
    assert buckets[0, 0].item() == 1 + 2 and buckets[4, 0].item() == 0 and buckets[1, 3].item() == 4
