"""The decoder's teacher-forced loop (gates precomputed, nonlinearity written out) equals the decoding step
(torch.nn.LSTMCell) run position by position, in value and gradient."""

import pytest
import torch

from varattn.config import ModelConfig
from varattn.data.vocab import PAD
from varattn.models.seq2seq import Seq2Seq


@pytest.mark.parametrize("layers", [1, 2])
def test_teacher_forcing_equals_the_step_loop(layers):
    torch.manual_seed(layers)
    config = ModelConfig(mode="soft", emb_size=6, enc_hidden=4, enc_layers=1, dec_hidden=7, dec_layers=layers,
                         attn_size=5, output_size=8, dropout=0.0)
    model = Seq2Seq(config, 20, 15).double()
    src = torch.tensor([[4, 5, 6, 7], [8, 9, PAD, PAD], [10, 11, 12, PAD]])
    lengths = (src != PAD).sum(1)
    tgt_in = torch.randint(2, 15, (3, 6))
    encoded = model.encode(src, lengths)
    hidden, scores = model.decoder(encoded, tgt_in)
    state, rows, row_scores = model.decoder.start(encoded), [], []
    for t in range(tgt_in.size(1)):
        top, score, state = model.decoder.step(encoded, state, tgt_in[:, t])
        rows.append(top)
        row_scores.append(score)
    torch.testing.assert_close(hidden, torch.stack(rows, 1))
    torch.testing.assert_close(scores, torch.stack(row_scores, 1))
    parameters = [p for p in model.decoder.parameters()]
    weight = torch.randn_like(hidden)
    fast = torch.autograd.grad((hidden * weight).sum() + scores.sum(), parameters, allow_unused=True,
                               retain_graph=True)
    slow = torch.autograd.grad((torch.stack(rows, 1) * weight).sum() + torch.stack(row_scores, 1).sum(),
                               parameters, allow_unused=True)
    for got, want in zip(fast, slow):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("kmax", [0, 2])
def test_next_word_mixture_equals_explicit_logsumexp(kmax):
    """log Σ_s p(s) p(y | h, x_s) (probability-space blocks) against log_softmax + logsumexp per row."""
    torch.manual_seed(3)
    config = ModelConfig(mode="marginal", emb_size=6, enc_hidden=4, enc_layers=1, dec_hidden=7, dec_layers=1,
                         attn_size=5, output_size=8, dropout=0.0)
    model = Seq2Seq(config, 20, 15).eval()
    src = torch.tensor([[4, 5, 6, 7], [8, 9, PAD, PAD], [10, 11, 12, PAD]])
    encoded = model.encode(src, (src != PAD).sum(1))
    hidden, scores = torch.randn(3, 7), 3 * torch.randn(3, 4)
    got = model.next_log_probs(encoded, hidden, scores, kmax=kmax, cells=5)  # blocks of one row
    for row in range(3):
        valid = encoded.mask[row].nonzero().squeeze(1)
        log_prior = scores[row, valid].log_softmax(-1)
        if kmax:
            log_prior, keep = log_prior.topk(min(kmax, valid.numel()))
            log_prior, valid = log_prior.log_softmax(-1), valid[keep]
        per_position = model.output.log_probs(model.output.from_hidden(hidden[row]) + encoded.out_memory[row, valid])
        want = torch.logsumexp(per_position + log_prior[:, None], 0)
        torch.testing.assert_close(got[row], want)
