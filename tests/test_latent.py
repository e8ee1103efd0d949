"""Tests for varattn.latent.objectives: every objective against brute force written as explicit loops.

The toy likelihood is ℓ(w) = log_softmax(tanh(w @ M + h) @ W)[y] with memory M [..., S, H], query
h [..., H], output layer W [H, V] and target y [...]; nonlinear in the context, so soft ≠ hard.
"""

import ast
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from varattn import latent
from varattn.latent import (MODES, Likelihood, categorical_kl, dirichlet_kl, dirichlet_rsample, entropy,
                            get_mode, kmax_log_probs, log_marginal, masked_log_softmax, objective,
                            sample_categorical)

ENUM_MODES = ("soft", "marginal", "hard-enum", "vae-enum")
# the modes whose objective is defined query by query (a chain mode's couples a sequence: tests/test_chain.py)
QUERY_MODES = tuple(m for m in MODES if not get_mode(m).chain)
SAMPLED = ("hard-sample", "vae-sample", "vae-gumbel", "vae-rws", "vae-dirichlet")
FEW = settings(max_examples=25, deadline=None)


class Toy:
    """ℓ(w) = log_softmax(tanh(w @ M + h) @ W)[y]; records the weights it is called with."""

    def __init__(self, M, h, W, y):
        self.M, self.h, self.W, self.y = M, h, W, y
        self.seen = []

    def __call__(self, w):                                   # [..., K, S] -> [..., K]
        self.seen.append(w.detach())                         # what the objective handed over
        return self.ell_batched(w)

    def ell_batched(self, w):
        ctx = w.to(self.M.dtype) @ self.M + self.h[..., None, :]
        logits = torch.tanh(ctx) @ self.W
        logp = logits.to(torch.promote_types(logits.dtype, torch.float32)).log_softmax(-1)
        target = self.y[..., None, None].expand(*self.y.shape, w.shape[-2], 1)
        return logp.gather(-1, target)[..., 0]

    def enumerate(self):                                     # [..., S]
        S = self.M.shape[-2]
        return self.ell_batched(torch.eye(S, dtype=self.M.dtype).expand(*self.y.shape, S, S))

    def ell(self, b, w):
        """Brute force for query b, weights w [S]: an explicit loop over positions."""
        ctx = self.h[b].clone()
        for s in range(w.shape[0]):
            ctx = ctx + w[s] * self.M[b, s]
        return (torch.tanh(ctx) @ self.W).log_softmax(-1)[self.y[b]]


class Linear:
    """ℓ(w) = Σ_s w_s c_s: E_{Dir(α)}[ℓ] = Σ_s c_s α_s / α_0 is known in closed form."""

    def __init__(self, c):
        self.c = c

    def __call__(self, w):
        return (w * self.c[..., None, :]).sum(-1)

    def enumerate(self):
        return self.c


def problem(seed, B=3, S=4, H=3, V=5, dtype=torch.float64, masked=True, scale=1.0):
    """Random leaves (requires_grad) and a mask with, when masked, random holes and empty rows."""
    g = torch.Generator().manual_seed(seed)
    leaf = lambda *shape, s=1.0: (s * torch.randn(*shape, generator=g, dtype=torch.float64)).to(dtype).requires_grad_()
    prior, posterior = leaf(B, S, s=scale), leaf(B, S, s=scale)
    M, h, W = leaf(B, S, H), leaf(B, H), leaf(H, V)
    y = torch.randint(V, (B,), generator=g)
    mask = torch.rand(B, S, generator=g) < 0.7 if masked else torch.ones(B, S, dtype=torch.bool)
    return dict(prior=prior, posterior=posterior, M=M, h=h, W=W, y=y, mask=mask)


def toy_of(pr):
    return Toy(pr["M"], pr["h"], pr["W"], pr["y"])


def brute(mode, pr):
    """The negative objective of an enumerable mode, one Python loop per query and position."""
    toy, mask = toy_of(pr), pr["mask"]
    B, S = mask.shape
    losses = []
    for b in range(B):
        idx = [s for s in range(S) if mask[b, s]]
        if not idx:
            losses.append(torch.zeros((), dtype=torch.float64))
            continue
        zp = sum(torch.exp(pr["prior"][b, s]) for s in idx)
        zq = sum(torch.exp(pr["posterior"][b, s]) for s in idx)
        p = {s: torch.exp(pr["prior"][b, s]) / zp for s in idx}
        q = {s: torch.exp(pr["posterior"][b, s]) / zq for s in idx}
        ell = {s: toy.ell(b, F.one_hot(torch.tensor(s), S).double()) for s in idx}
        if mode == "soft":
            w = torch.stack([p[s] if s in p else torch.zeros((), dtype=torch.float64) for s in range(S)])
            losses.append(-toy.ell(b, w))
        elif mode == "marginal":
            losses.append(-torch.log(sum(p[s] * torch.exp(ell[s]) for s in idx)))
        elif mode == "hard-enum":
            losses.append(-sum(p[s] * ell[s] for s in idx))
        elif mode == "vae-enum":
            kl = sum(q[s] * (torch.log(q[s]) - torch.log(p[s])) for s in idx)
            losses.append(-sum(q[s] * ell[s] for s in idx) + kl)
    return torch.stack(losses)


LEAVES = ("prior", "posterior", "M", "h", "W")


def grads(loss, pr):
    if not loss.requires_grad:                  # e.g. brute force on a batch whose rows are all masked
        return {k: torch.zeros_like(pr[k]) for k in LEAVES}
    gs = torch.autograd.grad(loss.sum(), [pr[k] for k in LEAVES], allow_unused=True)
    return {k: torch.zeros_like(pr[k]) if g is None else g for k, g in zip(LEAVES, gs)}


def run(mode, pr, **kw):
    return objective(mode, toy_of(pr), pr["prior"], pr["posterior"], pr["mask"], **kw)


# ----------------------------------------------------------------------------- exact modes


@FEW
@given(seed=st.integers(0, 10**6), B=st.integers(1, 3), S=st.integers(1, 5), masked=st.booleans())
def test_enumerable_modes_equal_brute_force_in_value_and_gradient(seed, B, S, masked):
    pr = problem(seed, B, S, masked=masked)
    for mode in ENUM_MODES:
        terms = run(mode, pr)
        expected = brute(mode, pr)
        assert terms.loss.dtype == torch.float64
        torch.testing.assert_close(terms.loss, expected, rtol=1e-9, atol=1e-10)
        got, want = grads(terms.loss, pr), grads(expected, pr)
        for k in LEAVES:
            torch.testing.assert_close(got[k], want[k], rtol=1e-8, atol=1e-10, msg=f"{mode} d/d{k}")


def test_reported_terms_of_exact_modes():
    pr = problem(1, B=4, S=5)
    vae = run("vae-enum", pr)
    torch.testing.assert_close(vae.kl, categorical_kl(pr["posterior"], pr["prior"], pr["mask"]).detach())
    torch.testing.assert_close(vae.nll + vae.kl, vae.loss.detach())
    marg = run("marginal", pr)
    torch.testing.assert_close(marg.nll, -log_marginal(toy_of(pr).enumerate(), pr["prior"], pr["mask"]).detach())
    for mode in ("soft", "marginal", "hard-enum"):
        terms = run(mode, pr)
        assert not terms.nll.requires_grad and not terms.kl.requires_grad
        assert torch.equal(terms.kl, torch.zeros_like(terms.kl))
        torch.testing.assert_close(terms.nll, terms.loss.detach())


@FEW
@given(seed=st.integers(0, 10**6), B=st.integers(1, 3), S=st.integers(1, 5), masked=st.booleans())
def test_vae_enum_exact_start_is_the_marginal_and_teaches_q_the_exact_posterior(seed, B, S, masked):
    """vae-enum's warm-up: loss = -log Σ p e^ℓ + KL(sg(q*) ‖ q) with q* ∝ p e^ℓ, written with loops here.
    The prior and the likelihood get the marginal's gradients; q's scores get q − q*."""
    pr = problem(seed, B, S, masked=masked)
    toy, mask = toy_of(pr), pr["mask"]
    expected = []
    for b in range(B):
        idx = [s for s in range(S) if mask[b, s]]
        if not idx:
            expected.append(torch.zeros((), dtype=torch.float64))
            continue
        ell = {s: toy.ell(b, F.one_hot(torch.tensor(s), S).double()) for s in idx}
        zp = sum(torch.exp(pr["prior"][b, s]) for s in idx)
        zq = sum(torch.exp(pr["posterior"][b, s]) for s in idx)
        joint = {s: torch.exp(pr["prior"][b, s]) / zp * torch.exp(ell[s]) for s in idx}
        evidence = sum(joint.values())
        exact = {s: (joint[s] / evidence).detach() for s in idx}
        q = {s: torch.exp(pr["posterior"][b, s]) / zq for s in idx}
        expected.append(-torch.log(evidence) + sum(exact[s] * (torch.log(exact[s]) - torch.log(q[s])) for s in idx))
    expected = torch.stack(expected)
    terms = run("vae-enum", pr, warmup=True)
    torch.testing.assert_close(terms.loss, expected, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(terms.nll, run("marginal", pr).nll)
    torch.testing.assert_close(terms.kl, categorical_kl(pr["posterior"], pr["prior"], mask).detach())
    got, want, marginal = grads(terms.loss, pr), grads(expected, pr), grads(run("marginal", pr).loss, pr)
    for k in LEAVES:
        torch.testing.assert_close(got[k], want[k], rtol=1e-8, atol=1e-10, msg=f"d/d{k}")
        if k != "posterior":
            torch.testing.assert_close(got[k], marginal[k], rtol=1e-8, atol=1e-10, msg=f"marginal d/d{k}")
    q = masked_log_softmax(pr["posterior"], mask).exp()
    exact = masked_log_softmax(pr["prior"] + toy.enumerate(), mask).exp()
    rows = mask.any(-1)
    torch.testing.assert_close(got["posterior"][rows], ((q - exact) * mask)[rows].detach(), rtol=1e-8, atol=1e-10)


# ----------------------------------------------------------------------------- estimators

MC_SAMPLES = 20_000
MC_TOL = 0.03   # absolute, on gradients of size O(1); observed errors are below 0.01


@pytest.mark.parametrize("mode, exact_modes", [("vae-sample", ("vae-enum",)),
                                               ("hard-sample", ("hard-enum", "soft"))])
def test_reinforce_gradient_is_unbiased(mode, exact_modes):
    """Mean surrogate gradient over 2·10^4 samples ≈ gradient of the expected objective; for
    hard-sample that includes the baseline's NLL: ∇[-Σ_s p(s)ℓ(s) - ℓ(E_p z)]."""
    pr = problem(7, B=2, S=4)
    pr["mask"] = torch.tensor([[True, True, False, True], [True, True, True, True]])
    gen = torch.Generator().manual_seed(0)
    got = grads(run(mode, pr, samples=MC_SAMPLES, generator=gen).loss, pr)
    want = grads(sum(brute(m, pr) for m in exact_modes), pr)
    for k in LEAVES:
        torch.testing.assert_close(got[k], want[k], rtol=0.0, atol=MC_TOL, msg=f"{mode} d/d{k}")


def test_gumbel_at_small_temperature_approaches_negative_elbo():
    pr = problem(3, B=3, S=4)
    gen = torch.Generator().manual_seed(0)
    terms = run("vae-gumbel", pr, samples=MC_SAMPLES, temperature=0.01, generator=gen)
    exact = brute("vae-enum", pr).detach()
    torch.testing.assert_close(terms.loss.detach(), exact, rtol=0.0, atol=0.03)
    torch.testing.assert_close(terms.kl, run("vae-enum", pr).kl)


def test_rws_with_true_posterior_gives_exact_marginal():
    pr = problem(5, B=4, S=5)
    log_prior = masked_log_softmax(pr["prior"], pr["mask"])
    true_post = (log_prior + toy_of(pr).enumerate()).detach()      # log p(s) + ℓ(s), -inf on masked
    gen = torch.Generator().manual_seed(0)
    rws = objective("vae-rws", toy_of(pr), pr["prior"], true_post, pr["mask"], samples=5, generator=gen)
    torch.testing.assert_close(rws.nll, run("marginal", pr).nll, rtol=0.0, atol=1e-12)
    assert torch.isfinite(rws.loss).all()


def test_rws_weights_do_not_underflow():
    """The original code normalised weights in probability space: 0/0 when every ℓ is very negative."""
    pr = problem(2, B=2, S=3)

    class Awful(Toy):
        def __call__(self, w):
            return super().__call__(w) - 2000.0
    lik = Awful(pr["M"], pr["h"], pr["W"], pr["y"])
    terms = objective("vae-rws", lik, pr["prior"], pr["posterior"], samples=5,
                      generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(terms.loss).all() and (terms.nll > 1999).all()
    assert all(torch.isfinite(g).all() for g in grads(terms.loss, pr).values())


def test_rws_loss_matches_formula():
    pr = problem(4, B=2, S=4, masked=False)
    K = 3
    terms = run("vae-rws", pr, samples=K, generator=torch.Generator().manual_seed(9))
    idx = sample_categorical(masked_log_softmax(pr["posterior"]), K, torch.Generator().manual_seed(9))
    toy = toy_of(pr)
    for b in range(2):
        lp = torch.log_softmax(pr["prior"][b], -1)
        lq = torch.log_softmax(pr["posterior"][b], -1)
        ell = [toy.ell(b, F.one_hot(idx[b, k], 4).double()) for k in range(K)]
        log_w = [lp[idx[b, k]] + ell[k] - lq[idx[b, k]] for k in range(K)]
        nll = -(torch.logsumexp(torch.stack(log_w), 0) - math.log(K))
        w = torch.softmax(torch.stack(log_w).detach(), 0)
        loss = -sum(w[k] * (ell[k] + lp[idx[b, k]] + lq[idx[b, k]]) for k in range(K))
        torch.testing.assert_close(terms.nll[b], nll.detach())
        torch.testing.assert_close(terms.loss[b], loss)


# ----------------------------------------------------------------------------- Dirichlet


def test_dirichlet_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    a, b = 2 * torch.randn(5, 6, generator=g, dtype=torch.float64), 2 * torch.randn(5, 6, generator=g, dtype=torch.float64)
    D = torch.distributions.Dirichlet
    torch.testing.assert_close(dirichlet_kl(a, b), torch.distributions.kl_divergence(D(a.exp()), D(b.exp())))
    mask = torch.rand(5, 6, generator=g) < 0.6
    mask[0] = False
    mask[1] = torch.tensor([False, True, False, False, False, False])
    got = dirichlet_kl(a, b, mask)
    for r in range(5):
        keep = [s for s in range(6) if mask[r, s]]
        if len(keep) < 2:       # an empty row, or a point mass: KL = 0
            assert got[r] == 0
            continue
        want = torch.distributions.kl_divergence(D(a[r, keep].exp()), D(b[r, keep].exp()))
        torch.testing.assert_close(got[r], want)


def test_dirichlet_sampler_mean_and_reparameterised_gradient():
    """E_{Dir(α)}[z] = α/α_0, even for tiny α; and the warm-up surrogate -mean_k c·z_k has the
    gradient of -Σ c α/α_0 (the MC mean of the implicit reparameterisation gradient)."""
    log_alpha = torch.tensor([[-6.0, 0.0, 1.0, 2.0], [0.5, -1.0, 3.0, 0.0]], dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, True, True, True], [True, True, False, True]])
    gen = torch.Generator().manual_seed(0)
    z = dirichlet_rsample(log_alpha, mask, samples=MC_SAMPLES, generator=gen)
    alpha = log_alpha.detach().exp() * mask
    torch.testing.assert_close(z.mean(-2), alpha / alpha.sum(-1, keepdim=True), rtol=0.0, atol=0.01)
    assert torch.all(z[..., ~mask[1]][1] == 0) and torch.allclose(z.sum(-1), torch.ones(()).double())
    c = torch.tensor([[1.0, -2.0, 0.5, 3.0], [2.0, 1.0, 7.0, -1.0]], dtype=torch.float64)
    terms = objective("vae-dirichlet", Linear(c), log_alpha, mask=mask, samples=MC_SAMPLES, warmup=True,
                      generator=torch.Generator().manual_seed(1))
    got, = torch.autograd.grad(terms.loss.sum(), log_alpha)
    a = log_alpha.exp() * mask
    want, = torch.autograd.grad(-(c * a / a.sum(-1, keepdim=True)).sum(), log_alpha)
    torch.testing.assert_close(got, want, rtol=0.0, atol=MC_TOL)
    assert torch.equal(terms.kl, torch.zeros(2, dtype=torch.float64))


def test_vae_dirichlet_terms():
    pr = problem(6, B=3, S=4)
    terms = run("vae-dirichlet", pr, samples=4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(terms.kl, dirichlet_kl(pr["posterior"], pr["prior"], pr["mask"]).detach())
    torch.testing.assert_close(terms.loss.detach(), terms.nll + terms.kl)


# ----------------------------------------------------------------------------- robustness


def every_mode(pr, **kw):
    for mode in QUERY_MODES:
        toy = toy_of(pr)
        yield mode, toy, objective(mode, toy, pr["prior"], pr["posterior"], pr["mask"], samples=3,
                                   generator=torch.Generator().manual_seed(0), **kw)


def awkward_mask():
    return torch.tensor([[True, False, True, True, False],    # holes
                         [False, False, True, False, False],  # one valid position
                         [False, False, False, False, False],  # nothing valid
                         [True, True, True, True, True]])


def test_masked_positions_get_no_probability_samples_or_gradient():
    pr = problem(11, B=4, S=5)
    pr["mask"] = mask = awkward_mask()
    for mode, toy, terms in every_mode(pr):
        assert torch.equal(terms.loss[2].detach(), torch.zeros((), dtype=torch.float64)), mode
        g = grads(terms.loss, pr)
        for k in ("prior", "posterior"):
            assert torch.equal(g[k][~mask], torch.zeros_like(g[k][~mask])), (mode, k)
        assert torch.equal(g["M"][~mask], torch.zeros_like(g["M"][~mask])), mode
        for w in toy.seen:                      # every point handed to the likelihood
            real = w[mask.any(-1)]
            hole = ~mask[mask.any(-1)][:, None, :].expand_as(real)
            assert torch.equal(real[hole], torch.zeros_like(real[hole])), mode
    warm = objective("vae-dirichlet", toy_of(pr), pr["prior"], None, mask, samples=3, warmup=True)
    g = grads(warm.loss, pr)
    assert torch.equal(g["prior"][~mask], torch.zeros_like(g["prior"][~mask]))
    assert torch.equal(g["posterior"], torch.zeros_like(g["posterior"]))


def test_padding_values_are_never_read():
    pr, dirty = problem(12, B=4, S=5), problem(12, B=4, S=5)
    pr["mask"] = dirty["mask"] = mask = awkward_mask()
    with torch.no_grad():
        dirty["prior"][~mask] = float("nan")
        dirty["posterior"][~mask] = float("inf")
    for (mode, _, clean), (_, _, messy) in zip(every_mode(pr), every_mode(dirty)):
        torch.testing.assert_close(messy.loss, clean.loss, msg=mode)
        g = grads(messy.loss, dirty)
        assert all(torch.isfinite(v).all() for v in g.values()), mode


def test_one_valid_position_every_mode_is_the_plain_likelihood():
    pr = problem(13, B=2, S=4)
    pr["mask"] = torch.tensor([[False, True, False, False], [False, False, False, True]])
    ell = toy_of(pr).enumerate().detach()[pr["mask"]]
    for mode, _, terms in every_mode(pr):
        torch.testing.assert_close(terms.nll, -ell, msg=mode)
        torch.testing.assert_close(terms.kl, torch.zeros_like(terms.kl), msg=mode)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_extreme_scores_finite_in_every_mode(dtype):
    pr = problem(14, B=4, S=5, dtype=dtype, scale=1.0)
    with torch.no_grad():
        for k in ("prior", "posterior"):
            pr[k].copy_(torch.where(pr[k] > 0, 30.0, -30.0))
    pr["mask"] = awkward_mask()
    want = torch.float64 if dtype == torch.float64 else torch.float32
    for mode, _, terms in every_mode(pr):
        for t in (terms.loss, terms.nll, terms.kl):
            assert t.dtype == want and t.shape == (4,) and torch.isfinite(t).all(), mode
        for k, g in grads(terms.loss, pr).items():
            assert g.dtype == dtype and torch.isfinite(g).all(), (mode, k)


def test_bf16_close_to_float32():
    pr32 = problem(15, B=3, S=4, dtype=torch.float32)
    pr16 = {k: (v.detach().bfloat16().float().requires_grad_() if v.is_floating_point() else v) for k, v in pr32.items()}
    prb = {k: (v.detach().bfloat16().requires_grad_() if v.is_floating_point() else v) for k, v in pr32.items()}
    for mode in ENUM_MODES:
        torch.testing.assert_close(run(mode, prb).loss, run(mode, pr16).loss, rtol=0.05, atol=0.05)


def test_samples_are_reproducible_and_averaged():
    pr = problem(16, B=3, S=5)
    for mode in SAMPLED:
        a = run(mode, pr, samples=4, generator=torch.Generator().manual_seed(3))
        b = run(mode, pr, samples=4, generator=torch.Generator().manual_seed(3))
        c = run(mode, pr, samples=4, generator=torch.Generator().manual_seed(4))
        assert a.loss.shape == a.nll.shape == a.kl.shape == (3,)
        assert torch.equal(a.loss, b.loss) and torch.equal(a.nll, b.nll), mode
        assert not torch.equal(a.nll, c.nll), mode


def test_broadcast_mask_and_extra_query_dimensions():
    g = torch.Generator().manual_seed(0)
    B, T, S, H, V = 2, 3, 4, 3, 5
    prior, posterior = torch.randn(B, T, S, generator=g), torch.randn(B, T, S, generator=g)
    M, h, W = torch.randn(B, 1, S, H, generator=g).expand(B, T, S, H), torch.randn(B, T, H, generator=g), torch.randn(H, V, generator=g)
    y = torch.randint(V, (B, T), generator=g)
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])[:, None, :]   # [B, 1, S]
    flat = lambda x: x.reshape(B * T, *x.shape[2:])
    for mode in ENUM_MODES:
        full = objective(mode, Toy(M, h, W, y), prior, posterior, mask)
        flat_terms = objective(mode, Toy(flat(M), flat(h), W, flat(y)), flat(prior), flat(posterior),
                               flat(mask.expand(B, T, S)))
        assert full.loss.shape == (B, T)
        torch.testing.assert_close(flat(full.loss), flat_terms.loss)


def test_errors():
    pr = problem(0)
    with pytest.raises(ValueError, match="unknown latent mode"):
        run("vae", pr)
    with pytest.raises(ValueError, match="posterior"):
        objective("vae-enum", toy_of(pr), pr["prior"])
    with pytest.raises(ValueError, match="warmup"):
        run("hard-enum", pr, warmup=True)
    with pytest.raises(ValueError, match="samples"):
        run("vae-sample", pr, samples=0)
    assert isinstance(toy_of(pr), Likelihood)


# ----------------------------------------------------------------------------- helpers


@FEW
@given(seed=st.integers(0, 10**6), S=st.integers(1, 6), k=st.integers(1, 7))
def test_helpers_match_loops(seed, S, k):
    g = torch.Generator().manual_seed(seed)
    B = 3
    x, y = torch.randn(B, S, generator=g, dtype=torch.float64), torch.randn(B, S, generator=g, dtype=torch.float64)
    mask = torch.rand(B, S, generator=g) < 0.7
    lsm, ent, kl, top = masked_log_softmax(x, mask), entropy(x, mask), categorical_kl(x, y, mask), kmax_log_probs(x, mask, k)
    for b in range(B):
        idx = [s for s in range(S) if mask[b, s]]
        z = sum(math.exp(x[b, s]) for s in idx)
        p = {s: math.exp(x[b, s]) / z for s in idx}
        zq = sum(math.exp(y[b, s]) for s in idx)
        q = {s: math.exp(y[b, s]) / zq for s in idx}
        for s in range(S):
            assert lsm[b, s].item() == pytest.approx(math.log(p[s])) if s in p else lsm[b, s] == -math.inf
        assert ent[b].item() == pytest.approx(-sum(v * math.log(v) for v in p.values()), abs=1e-12)
        assert kl[b].item() == pytest.approx(sum(p[s] * math.log(p[s] / q[s]) for s in idx), abs=1e-12)
        kept = sorted(idx, key=lambda s: -x[b, s].item())[:k]
        zk = sum(math.exp(x[b, s]) for s in kept)
        for s in range(S):
            want = math.log(math.exp(x[b, s]) / zk) if s in kept else -math.inf
            assert top[b, s].item() == pytest.approx(want)


def test_categorical_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    q, p = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    C = torch.distributions.Categorical
    torch.testing.assert_close(categorical_kl(q, p), torch.distributions.kl_divergence(C(logits=q), C(logits=p)))


def test_sample_categorical_frequencies_and_mask():
    log_p = masked_log_softmax(torch.tensor([[0.0, 1.0, -1.0, 2.0], [3.0, 0.0, 0.0, 0.0]]),
                               torch.tensor([[True, True, False, True], [False, True, True, False]]))
    idx = sample_categorical(log_p, MC_SAMPLES, torch.Generator().manual_seed(0))
    assert idx.shape == (2, MC_SAMPLES) and idx.dtype == torch.int64
    freq = F.one_hot(idx, 4).double().mean(-2)
    torch.testing.assert_close(freq, log_p.exp().double(), rtol=0.0, atol=0.015)
    assert torch.equal(freq[log_p == -math.inf], torch.zeros(3, dtype=torch.float64))


def test_latent_imports_nothing_from_varattn():
    for source in Path(latent.__file__).parent.glob("*.py"):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                assert node.level == 0 and (not module.startswith("varattn") or module.startswith("varattn.latent")), \
                    (source.name, ast.dump(node))
            elif isinstance(node, ast.Import):
                assert all(not a.name.startswith("varattn") for a in node.names), (source.name, ast.dump(node))


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_follows_the_device_of_the_inputs(device):
    pr = problem(17, B=3, S=4)
    pr = {k: (v.detach().to(device).requires_grad_() if v.is_floating_point() else v.to(device)) for k, v in pr.items()}
    for mode in QUERY_MODES:
        terms = objective(mode, toy_of(pr), pr["prior"], pr["posterior"], pr["mask"], samples=2,
                          generator=torch.Generator(device).manual_seed(0))
        assert terms.loss.device.type == terms.nll.device.type == terms.kl.device.type == device, mode
        assert all(torch.isfinite(g).all() for g in grads(terms.loss, pr).values()), mode
