"""Beam search: greedy equivalence, exactness against exhaustive search, batch invariance, K-max."""

from __future__ import annotations

import itertools

import pytest
import torch

from varattn import latent
from varattn.config import ModelConfig
from varattn.data.vocab import BOS, EOS, PAD
from varattn.decoding.search import beam_search, greedy, length_penalty
from varattn.models.seq2seq import Seq2Seq


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(mode: str, src_vocab: int = 14, tgt_vocab: int = 11, seed: int = 0) -> Seq2Seq:
    torch.manual_seed(seed)
    config = ModelConfig(mode=mode, emb_size=8, enc_hidden=6, enc_layers=1, dec_hidden=8, dec_layers=1,
                         attn_size=8, dropout=0.0, init_range=0.8, inf_hidden=4, inf_layers=1)
    return Seq2Seq(config, src_vocab, tgt_vocab).double().eval()


def sources(lengths: list[int], vocab: int = 14, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    src = torch.full((len(lengths), max(lengths)), PAD, dtype=torch.long)
    for row, length in enumerate(lengths):
        src[row, :length] = torch.randint(4, vocab, (length,), generator=generator)
    return src, torch.tensor(lengths)


def same(found, expected, rel: float = 1e-6) -> None:
    """Equal words and alignments; equal scores up to float32 rounding (the model's output layer
    computes log-probabilities in float32 even for a float64 model)."""
    assert [h.tokens for h in found] == [h.tokens for h in expected]
    assert [h.alignment for h in found] == [h.alignment for h in expected]
    assert [h.score for h in found] == pytest.approx([h.score for h in expected], rel=rel, abs=rel)
    assert [h.log_prob for h in found] == pytest.approx([h.log_prob for h in expected], rel=rel, abs=rel)


@pytest.mark.parametrize("mode, kmax", [("soft", 0), ("marginal", 0), ("marginal", 2)])
@pytest.mark.parametrize("alpha, eos_norm", [(0.0, 0.0), (1.0, 0.7)])
def test_beam_one_equals_greedy(mode, kmax, alpha, eos_norm):
    model = tiny_model(mode)
    src, lengths = sources([7, 3, 9, 1, 5, 6])
    settings = dict(alpha=alpha, eos_norm=eos_norm, max_len_a=1.0, max_len_b=3, kmax=kmax)
    expected = greedy(model, src, lengths, **settings)
    found = beam_search(model, src, lengths, beam=1, **settings)
    same([n_best[0] for n_best in found], expected, rel=1e-12)  # the very same computation
    assert len({tuple(h.tokens) for h in expected}) > 1  # the outputs are not all alike


def token_log_probs(model: Seq2Seq, src_row: torch.Tensor, length: int, targets: list[list[int]]):
    """log p(y_t | x, y_<t) ``[rows, T]`` of every target sequence (``</s>`` appended; 0 past its end) from
    the model's teacher-forced pass (for latent models the exact marginal by enumeration), and that pass."""
    rows = len(targets)
    width = max(len(y) for y in targets) + 1
    tgt_in = torch.full((rows, width), PAD, dtype=torch.long)
    tgt_out = torch.full((rows, width), PAD, dtype=torch.long)
    for row, y in enumerate(targets):
        tgt_in[row, : len(y) + 1] = torch.tensor([BOS, *y])
        tgt_out[row, : len(y) + 1] = torch.tensor([*y, EOS])
    src = src_row[None, :length].expand(rows, length)
    with torch.no_grad():
        fwd = model(src, torch.full((rows,), length), tgt_in, tgt_out, (tgt_out != PAD).sum(1))
        if model.config.mode == "soft":
            per_token = -latent.objective("soft", fwd.likelihood, fwd.prior, mask=fwd.mask).nll
        else:
            per_token = latent.log_marginal(fwd.likelihood.enumerate(), fwd.prior, fwd.mask)
    return per_token.double().masked_fill(~fwd.query_weights, 0.0), fwd


def teacher_forced(model: Seq2Seq, src_row: torch.Tensor, length: int, targets: list[list[int]]):
    """log p(y | x) of every target sequence (``</s>`` appended) and the prior's argmax per token, from
    the model's teacher-forced pass: for latent models the exact marginal by enumeration."""
    per_token, fwd = token_log_probs(model, src_row, length, targets)
    links = fwd.prior.masked_fill(~fwd.mask, float("-inf")).argmax(-1)
    return per_token.sum(1).tolist(), [links[row, : len(y)].tolist() for row, y in enumerate(targets)]


@pytest.mark.parametrize("mode", ["soft", "marginal"])
def test_wide_beam_equals_exhaustive_search(mode):
    """V = 6 (three producible words besides </s>), at most 4 words: 121 possible outputs. A beam wider
    than every step's candidate list explores them all, so its n-best list must be the exhaustive one."""
    model = tiny_model(mode, tgt_vocab=6)
    src, lengths = sources([5, 2, 8])
    alpha, eos_norm, most = 1.0, 0.6, 4
    found = beam_search(model, src, lengths, beam=128, n_best=10, alpha=alpha, eos_norm=eos_norm,
                        max_len_a=0.0, max_len_b=most)
    words = [tok for tok in range(6) if tok not in (PAD, BOS, EOS)]
    outputs = [list(y) for n in range(most + 1) for y in itertools.product(words, repeat=n)]
    for row in range(len(lengths)):
        x = int(lengths[row])
        log_probs, links = teacher_forced(model, src[row], x, outputs)
        scores = [(lp - eos_norm * x / (len(y) + 2)) / length_penalty(len(y) + 1, alpha)
                  for lp, y in zip(log_probs, outputs)]
        ranking = sorted(range(len(outputs)), key=lambda i: -scores[i])[:10]
        assert [h.tokens for h in found[row]] == [outputs[i] for i in ranking]
        assert [h.score for h in found[row]] == pytest.approx([scores[i] for i in ranking], rel=1e-5)
        assert [h.log_prob for h in found[row]] == pytest.approx([log_probs[i] for i in ranking], rel=1e-5)
        assert [h.alignment for h in found[row]] == [links[i] for i in ranking]


@pytest.mark.parametrize("mode, kmax", [("soft", 0), ("marginal", 0), ("vae-enum", 3)])
def test_batch_decodes_as_sentences_one_by_one(mode, kmax):
    model = tiny_model(mode)
    src, lengths = sources([4, 9, 1, 6, 2, 7])
    settings = dict(beam=4, n_best=3, alpha=1.0, eos_norm=0.5, max_len_a=1.5, max_len_b=2, kmax=kmax)
    together = beam_search(model, src, lengths, **settings)
    for row, length in enumerate(lengths.tolist()):
        alone = beam_search(model, src[row : row + 1, :length], lengths[row : row + 1], **settings)[0]
        same(together[row], alone)
        assert len(alone) == 3 and alone[0].score >= alone[1].score >= alone[2].score


def test_kmax_at_least_the_source_length_decodes_exactly():
    model = tiny_model("marginal")
    src, lengths = sources([4, 6, 3])
    settings = dict(beam=3, n_best=3, alpha=1.0, eos_norm=0.3)
    exact = beam_search(model, src, lengths, **settings)
    for k in (6, 9):
        for found, expected in zip(beam_search(model, src, lengths, kmax=k, **settings), exact):
            assert [h.tokens for h in found] == [h.tokens for h in expected]
            assert [h.score for h in found] == pytest.approx([h.score for h in expected], rel=1e-6)
    truncated = beam_search(model, src, lengths, kmax=1, **settings)
    assert [h.score for n in truncated for h in n] != pytest.approx([h.score for n in exact for h in n])


def test_hypotheses_respect_the_length_limit_and_the_specials():
    model = tiny_model("soft")
    src, lengths = sources([3, 8])
    found = beam_search(model, src, lengths, beam=5, n_best=5, max_len_a=0.5, max_len_b=1)
    for n_best, limit in zip(found, [2, 5]):  # a * |x| + b words at most, before </s>
        assert len(n_best) == 5
        for hypothesis in n_best:
            assert not set(hypothesis.tokens) & {PAD, BOS, EOS}
            assert len(hypothesis.alignment) == len(hypothesis.tokens) <= limit
    with pytest.raises(ValueError):
        beam_search(model, src, lengths, beam=2, n_best=3)
