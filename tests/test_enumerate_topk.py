"""Truncated enumeration in training (train.enumerate_topk): exact when K covers every position, the
truncated sum of a brute-force computation otherwise, never in evaluation, refused where it does not
apply, kept by a resumed run."""

import math

import pytest
import torch

from varattn import config as config_lib
from varattn import latent
from varattn.data.text.batching import collate
from varattn.errors import UserError
from varattn.models.seq2seq import Seq2Seq
from varattn.training.trainer import Trainer

from conftest import TINY_MODEL, tiny_config

TRUNCATABLE = ["marginal", "hard-enum", "vae-enum"]


def _model(mode: str, vocab: int = 13, seed: int = 0) -> Seq2Seq:
    torch.manual_seed(seed)
    settings = {"model": {"mode": mode, **TINY_MODEL, "enum_block": 64}}  # several blocks per pass
    model = Seq2Seq(config_lib.from_dict(settings).validate().model, vocab, vocab).double()
    return model.train()


def _batch(vocab: int = 13, seed: int = 1):
    """Three sentence pairs of ragged lengths (padding on both sides), tokens 4.. (0-3 are specials)."""
    g = torch.Generator().manual_seed(seed)
    src_len, tgt_len = [7, 4, 6], [5, 6, 3]
    src = torch.zeros(3, 7, dtype=torch.long)
    tgt_in = torch.zeros(3, 7, dtype=torch.long)
    tgt_out = torch.zeros(3, 7, dtype=torch.long)
    for b in range(3):
        src[b, :src_len[b]] = torch.randint(4, vocab, (src_len[b],), generator=g)
        words = torch.randint(4, vocab, (tgt_len[b],), generator=g)
        tgt_in[b, 0], tgt_in[b, 1:tgt_len[b] + 1] = 2, words
        tgt_out[b, :tgt_len[b]], tgt_out[b, tgt_len[b]] = words, 3
    return src, torch.tensor(src_len), tgt_in, tgt_out, torch.tensor(tgt_len) + 1


def _loss_and_grads(model, batch, topk):
    model.zero_grad()
    out = model(*batch)
    out.topk = topk
    loss, _ = latent.batch_objective(model.mode, out)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("mode", TRUNCATABLE)
def test_k_covering_every_position_is_the_exact_loss_and_gradient(mode):
    model, batch = _model(mode), _batch()
    exact, exact_grads = _loss_and_grads(model, batch, 0)
    for k in (7, 50):  # K = S (the padded width), K > S
        loss, grads = _loss_and_grads(model, batch, k)
        torch.testing.assert_close(loss, exact, rtol=1e-10, atol=1e-12)
        assert grads.keys() == exact_grads.keys()
        for name in grads:
            torch.testing.assert_close(grads[name], exact_grads[name], rtol=1e-8, atol=1e-11, msg=name)


def _by_hand(mode, ell, prior, posterior, mask, query_weights, k):
    """The truncated loss written out query by query from the exact enumeration ℓ [B, T, S]: sort the
    weighting distribution's valid positions, keep the first k, sum."""
    total, count = 0.0, 0
    batch, length, _ = ell.shape
    for b in range(batch):
        valid = [s for s in range(mask.shape[-1]) if mask[b, 0, s]]
        for t in range(length):
            if not query_weights[b, t]:
                continue
            log_p = torch.log_softmax(prior[b, t, valid], 0)
            log_q = None if posterior is None else torch.log_softmax(posterior[b, t, valid], 0)
            weigh = log_p if log_q is None else log_q
            order = sorted(range(len(valid)), key=lambda i: -float(weigh[i].detach()))[:k]
            lik = torch.stack([ell[b, t, valid[i]] for i in order])
            if mode == "marginal":  # not renormalised
                term = -torch.logsumexp(torch.stack([log_p[i] for i in order]) + lik, 0)
            else:  # renormalised over the kept positions
                w = torch.softmax(torch.stack([weigh[i] for i in order]), 0)
                term = -(w * lik).sum()
                if log_q is not None:
                    term = term + (log_q.exp() * (log_q - log_p)).sum()
            total, count = total + term, count + 1
    return total / count


@pytest.mark.parametrize("mode", TRUNCATABLE)
@pytest.mark.parametrize("k", [1, 2, 3])
def test_k_below_the_source_length_is_the_truncated_sum_computed_by_hand(mode, k):
    model, batch = _model(mode), _batch()
    truncated, grads = _loss_and_grads(model, batch, k)
    model.zero_grad()
    out = model(*batch)
    ell = out.likelihood.enumerate()  # the exact path, every position
    expected = _by_hand(mode, ell, out.prior, out.posterior, out.mask, out.query_weights, k)
    expected.backward()
    torch.testing.assert_close(truncated, expected.detach(), rtol=1e-10, atol=1e-12)
    for name, parameter in model.named_parameters():
        if parameter.grad is not None:
            torch.testing.assert_close(grads[name], parameter.grad, rtol=1e-8, atol=1e-11, msg=name)
    exact, _ = _loss_and_grads(model, batch, 0)
    if mode == "marginal":
        assert truncated >= exact  # an upper bound on the exact loss


def test_the_latent_core_truncates_any_likelihood_and_calls_only_the_kept_positions():
    """A likelihood with a table of values and an enumerate_at that records the positions asked for;
    one without enumerate_at is gathered from enumerate()."""
    g = torch.Generator().manual_seed(4)
    table = torch.randn(2, 3, 5, generator=g, dtype=torch.float64) - 2
    prior = torch.randn(2, 3, 5, generator=g, dtype=torch.float64)
    mask = torch.tensor([[True] * 5, [True, True, False, True, False]])[:, None, :]
    asked = []

    class Table:
        def enumerate(self):
            return table

        def __call__(self, weights):
            raise AssertionError("not used by enumeration")

    class Picky(Table):
        def enumerate_at(self, index):
            asked.append(index)
            return table.gather(-1, index)

    plain = latent.objective("marginal", Table(), prior, mask=mask, topk=2)
    picky = latent.objective("marginal", Picky(), prior, mask=mask, topk=2)
    torch.testing.assert_close(plain.loss, picky.loss)
    (index,) = asked
    assert index.shape == (2, 3, 2)
    for b in range(2):
        for t in range(3):
            scores = prior[b, t].masked_fill(~mask[b, 0], -math.inf)
            assert set(index[b, t].tolist()) == set(scores.topk(2).indices.tolist())
            kept = index[b, t]
            lp = torch.log_softmax(scores, 0)
            torch.testing.assert_close(plain.loss[b, t], -torch.logsumexp(lp[kept] + table[b, t, kept], 0))
    with pytest.raises(ValueError, match="truncated enumeration is defined for marginal, hard-enum, vae-enum"):
        latent.objective("soft", Table(), prior, mask=mask, topk=2)


# ----------------------------------------------------------------------------- in the trainer


def _trainer(data, tmp, mode="marginal", resume=False, **train):
    return Trainer(tiny_config(data, mode, **train), tmp, resume=resume)


@pytest.mark.parametrize("mode", ["hmm", "soft", "vae-sample"])
def test_a_mode_it_does_not_apply_to_is_refused_in_one_line(synthetic_data, tmp_path, mode):
    with pytest.raises(UserError) as caught:
        _trainer(synthetic_data, tmp_path / "run", mode, enumerate_topk=3)
    message = str(caught.value)
    assert "\n" not in message and "train.enumerate_topk=3" in message and f"mode {mode}" in message
    assert "train.enumerate_topk=0" in message


def test_training_truncates_and_evaluation_stays_exact(synthetic_data, tmp_path):
    exact = _trainer(synthetic_data, tmp_path / "exact")
    truncated = _trainer(synthetic_data, tmp_path / "topk", enumerate_topk=1)
    truncated.model.load_state_dict(exact.model.state_dict())
    batch = collate(exact.train_split, exact.batcher.batches(1)[0])
    losses = []
    for trainer in (exact, truncated):
        trainer.model.train()
        out = trainer.net(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, batch.tgt_lengths)
        losses.append(latent.batch_objective(trainer.model.mode, out)[0].item())
        assert out.topk == trainer.config.train.enumerate_topk
    assert losses[1] > losses[0] + 1e-3  # the training pass is truncated (K = 1 keeps one position)
    scores = [trainer.validate() for trainer in (exact, truncated)]
    assert "ppl" in scores[0] and scores[0] == scores[1]


def test_resume_keeps_the_setting(synthetic_data, tmp_path):
    run = tmp_path / "run"
    _trainer(synthetic_data, run, enumerate_topk=2, max_steps=2).run()
    saved = config_lib.load(str(run / "config.yaml"), ["train.max_steps=3"])
    resumed = Trainer(saved, run, resume=True)
    assert resumed.progress.step == 2 and resumed.config.train.enumerate_topk == 2
    batch = collate(resumed.train_split, resumed.batcher.batches(1)[0])
    resumed.model.train()
    assert resumed.net(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, batch.tgt_lengths).topk == 2
    assert resumed.run()["steps"] == 3
    with pytest.raises(UserError, match="train.enumerate_topk=0"):
        Trainer(config_lib.load(str(run / "config.yaml"), ["train.enumerate_topk=0"]), run, resume=True)
