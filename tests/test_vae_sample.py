"""vae-sample through the whole NMT model (issue 16): its gradient is vae-enum's in expectation, and the
output layer's dropout mask is shared by a token's sampled points, so REINFORCE rewards carry no dropout
noise."""

from __future__ import annotations

import torch

from conftest import TINY_MODEL
from varattn import latent
from varattn.config import ModelConfig
from varattn.models.seq2seq import Seq2Seq


def tiny_batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    src = torch.randint(4, 30, (2, 6), generator=generator)
    src[1, 4:] = 0  # PAD
    tgt = torch.randint(4, 25, (2, 5), generator=generator)
    tgt_in = torch.cat([torch.full((2, 1), 2), tgt[:, :-1]], 1)  # BOS, then the target shifted
    lengths = torch.tensor([6, 4]), torch.tensor([5, 5])
    return src, lengths[0], tgt_in, tgt, lengths[1]


def model_of(dropout: float) -> Seq2Seq:
    torch.manual_seed(3)
    config = ModelConfig(mode="vae-enum", **{**TINY_MODEL, "dropout": dropout})
    return Seq2Seq(config, 30, 25).double()


def test_vae_sample_gradient_through_the_model_is_vae_enum_gradient(one_thread):
    model = model_of(0.0)
    src, src_len, tgt_in, tgt_out, tgt_len = tiny_batch()
    params = list(model.parameters())

    def grads(mode: str, **options):
        out = model(src, src_len, tgt_in, tgt_out, tgt_len)
        loss, _ = latent.batch_objective(latent.get_mode(mode), out, **options)
        return torch.autograd.grad(loss, params, allow_unused=True)

    exact = grads("vae-enum")
    sampled = grads("vae-sample", samples=40_000, generator=torch.Generator().manual_seed(1))
    flat = lambda gs: torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)  # noqa: E731
                                 for p, g in zip(params, gs)])
    e, s = flat(exact), flat(sampled)
    assert float(torch.nn.functional.cosine_similarity(e, s, dim=0)) > 0.999
    assert float((s - e).norm() / e.norm()) < 0.05


def test_points_of_a_token_share_the_dropout_mask():
    model = model_of(0.5)
    model.train()
    src, src_len, tgt_in, tgt_out, tgt_len = tiny_batch()
    out = model(src, src_len, tgt_in, tgt_out, tgt_len)
    sources = out.prior.size(-1)
    same = torch.zeros(*out.prior.shape[:2], 3, sources, dtype=torch.float64)
    same[..., 0] = 1.0                                  # three copies of the one-hot on position 0
    values = out.likelihood(same)
    assert torch.equal(values[..., 0], values[..., 1]) and torch.equal(values[..., 0], values[..., 2])
    again = out.likelihood(same)
    assert not torch.equal(values, again)               # a fresh mask at every call, still
    model.eval()
    out = model(src, src_len, tgt_in, tgt_out, tgt_len)
    eye = torch.eye(sources, dtype=torch.float64)[None, None].expand(*out.prior.shape[:2], -1, -1)
    keep = out.mask.expand(*out.prior.shape) & out.query_weights[..., None].bool()
    torch.testing.assert_close(out.likelihood(eye)[keep], out.likelihood.enumerate()[keep], check_dtype=False)
