"""vae-dirichlet's residual posterior (issue 16): log α_q = log α_p + the inference network's output, so
that the reconstruction term trains the prior through q's samples and the prior leaves the flat start.
Checked against the independent form (the paper's) as the second code path."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import TINY_MODEL, tiny_config
from varattn import config as config_lib
from varattn import latent
from varattn.config import ModelConfig
from varattn.models.seq2seq import Seq2Seq
from varattn.training.trainer import Trainer


def test_posterior_forms():
    prior, network = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    dirichlet, enum = latent.get_mode("vae-dirichlet"), latent.get_mode("vae-enum")
    torch.testing.assert_close(latent.posterior_scores(dirichlet, "auto", prior, network), prior + network)
    torch.testing.assert_close(latent.posterior_scores(dirichlet, "independent", prior, network), network)
    torch.testing.assert_close(latent.posterior_scores(enum, "auto", prior, network), network)
    torch.testing.assert_close(latent.posterior_scores(enum, "residual", prior, network), prior + network)
    with pytest.raises(ValueError, match="posterior form"):
        latent.posterior_scores(enum, "shared", prior, network)


def batch():
    generator = torch.Generator().manual_seed(0)
    src = torch.randint(4, 30, (2, 6), generator=generator)
    src[1, 4:] = 0  # PAD
    tgt = torch.randint(4, 25, (2, 5), generator=generator)
    tgt_in = torch.cat([torch.full((2, 1), 2), tgt[:, :-1]], 1)
    return src, torch.tensor([6, 4]), tgt_in, tgt, torch.tensor([5, 5])


@pytest.mark.parametrize("form", ["residual", "independent"])
def test_the_reconstruction_reaches_the_prior_only_through_a_residual_q(form):
    torch.manual_seed(3)
    model = Seq2Seq(ModelConfig(mode="vae-dirichlet", posterior_param=form, **TINY_MODEL), 30, 25)
    src, src_len, tgt_in, tgt_out, tgt_len = batch()
    out = model(src, src_len, tgt_in, tgt_out, tgt_len)
    network = model.inference(src, src_len, tgt_out, tgt_len)
    expected = out.prior + network if form == "residual" else network
    torch.testing.assert_close(out.posterior, expected)
    z = latent.dirichlet_rsample(out.posterior, out.mask, generator=torch.Generator().manual_seed(1))
    reconstruction = out.likelihood(z)[..., 0][out.query_weights].sum()
    (grad,) = torch.autograd.grad(reconstruction, out.prior, allow_unused=True)
    if form == "residual":
        assert grad is not None and float(grad[out.mask.expand_as(grad)].abs().min()) > 0
    else:
        assert grad is None  # q's samples do not depend on the prior: it learns only through the KL


def test_configs_saved_before_the_residual_form_keep_the_independent_one():
    saved = config_lib.from_saved({"model": {"mode": "vae-dirichlet"}}, "old checkpoint")
    assert saved.model.posterior_param == "independent"
    assert config_lib.from_saved({"model": {"mode": "vae-enum"}}, "old").model.posterior_param == "auto"
    kept = config_lib.from_saved({"model": {"mode": "vae-dirichlet", "posterior_param": "auto"}}, "new")
    assert kept.model.posterior_param == "auto"
    assert config_lib.from_dict({"model": {"mode": "vae-dirichlet"}}).model.posterior_param == "auto"


def test_a_bad_posterior_form_is_named(synthetic_data):
    with pytest.raises(config_lib.UserError, match="model.posterior_param"):
        config_lib.from_dict({"model": {"posterior_param": "shared"}}).validate()


def test_dirichlet_kl_keeps_its_precision_at_large_concentrations():
    generator = torch.Generator().manual_seed(2)
    log_p = (7.0 + torch.randn(4, 9, generator=generator, dtype=torch.float64))
    log_q = log_p + 1e-3 * torch.randn(4, 9, generator=generator, dtype=torch.float64)
    reference = torch.distributions.kl_divergence(torch.distributions.Dirichlet(log_q.exp()),
                                                  torch.distributions.Dirichlet(log_p.exp()))
    ours = latent.dirichlet_kl(log_q.float(), log_p.float())
    assert ours.dtype == torch.float32
    # float32 log-gamma terms of ~1e4 would leave errors of ~1e-3; the float64 inside leaves those of
    # rounding the inputs to float32
    assert float((ours.double() - reference).abs().max()) < 2e-4
    assert float(reference.min()) > 0


EPOCHS = 6  # 192 updates: the independent prior stays at 2.435 (flat), the residual one falls to ~2.25


def prior_entropy(synthetic_data, tmp_path, form: str) -> float:
    config = tiny_config(synthetic_data, "vae-dirichlet", epochs=EPOCHS, lr=0.01, eval_samples=2)
    config.model.posterior_param = form
    Trainer(config, tmp_path / form).run()
    return json.loads((tmp_path / form / "log.jsonl").read_text().splitlines()[-1])["entropy"]


@pytest.mark.slow
def test_residual_q_moves_the_prior_off_the_flat_start(synthetic_data, tmp_path, one_thread):
    residual = prior_entropy(synthetic_data, tmp_path, "residual")
    independent = prior_entropy(synthetic_data, tmp_path, "independent")
    assert residual < independent - 0.1
