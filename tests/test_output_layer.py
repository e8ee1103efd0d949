"""The output layer as a Likelihood at points on the simplex: value and gradient against explicit loops."""

import torch

from varattn.modules.output import OutputLayer, TokenLikelihood


def explicit(layer: OutputLayer, hidden_proj, out_memory, targets, weights):
    """log p(y_t | h_t, Σ_s w_s x_s) cell by cell: [B, T, K]."""
    batch, length, points, _ = weights.shape
    rows = []
    for b in range(batch):
        for t in range(length):
            for k in range(points):
                context = sum(weights[b, t, k, s] * out_memory[b, s] for s in range(out_memory.size(1)))
                logits = layer.generator(torch.tanh(hidden_proj[b, t] + context))
                rows.append(logits[targets[b, t]] - torch.logsumexp(logits, 0))
    return torch.stack(rows).view(batch, length, points)


def problem(seed: int, points: int):
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    layer = OutputLayer(hidden=5, memory_size=6, output_size=7, vocab=11, dropout=0.3).double().eval()
    batch, length, sources = 3, 4, 5
    hidden_proj = torch.randn(batch, length, 7, generator=generator, dtype=torch.float64, requires_grad=True)
    out_memory = torch.randn(batch, sources, 7, generator=generator, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 11, (batch, length), generator=generator)
    weights = torch.randn(batch, length, points, sources, generator=generator, dtype=torch.float64).softmax(-1)
    return layer, hidden_proj, out_memory, targets, weights.requires_grad_()


def test_points_on_the_simplex_equal_explicit_loops_in_value_and_gradient():
    for points in (1, 3):
        layer, hidden_proj, out_memory, targets, weights = problem(points, points)
        fast = TokenLikelihood(layer, hidden_proj, out_memory, targets, block=100)(weights)
        leaves = (hidden_proj, out_memory, weights, layer.generator.weight)
        grads = torch.autograd.grad(fast.sum(), leaves)
        slow = explicit(layer, hidden_proj, out_memory, targets, weights)
        # the logits are taken to float32 (for bf16 autocast), so compare at float32 precision
        torch.testing.assert_close(fast, slow.float())
        for got, want in zip(grads, torch.autograd.grad(slow.sum(), leaves)):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_target_log_probs_equal_log_softmax_at_the_target():
    layer, hidden_proj, _, targets, _ = problem(5, 1)
    got = layer.target_log_probs(hidden_proj, targets)
    want = layer.log_probs(hidden_proj).gather(-1, targets[..., None]).squeeze(-1)
    torch.testing.assert_close(got, want.float())
