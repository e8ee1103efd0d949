"""The translation model: padding and batch composition never change a sentence's numbers."""

import pytest
import torch

from varattn import latent
from varattn.config import ModelConfig
from varattn.data.vocab import BOS, EOS, PAD
from varattn.models.seq2seq import Seq2Seq

from conftest import TINY_MODEL


def make_batch(sentences):
    """sentences: list of (src ids, tgt ids) -> padded tensors as the collate function makes them."""
    width_s = max(len(s) for s, _ in sentences)
    width_t = max(len(t) for _, t in sentences) + 1
    src = torch.full((len(sentences), width_s), PAD)
    tgt_in = torch.full((len(sentences), width_t), PAD)
    tgt_out = torch.full((len(sentences), width_t), PAD)
    for row, (s, t) in enumerate(sentences):
        src[row, : len(s)] = torch.tensor(s)
        tgt_in[row, : len(t) + 1] = torch.tensor([BOS] + t)
        tgt_out[row, : len(t) + 1] = torch.tensor(t + [EOS])
    src_lengths = torch.tensor([len(s) for s, _ in sentences])
    tgt_lengths = torch.tensor([len(t) + 1 for _, t in sentences])
    return src, src_lengths, tgt_in, tgt_out, tgt_lengths


def random_sentences(count, generator):
    return [([int(x) for x in torch.randint(4, 30, (int(torch.randint(2, 9, (1,), generator=generator)),),
                                            generator=generator)],
             [int(x) for x in torch.randint(4, 25, (int(torch.randint(1, 8, (1,), generator=generator)),),
                                            generator=generator)])
            for _ in range(count)]


@pytest.mark.parametrize("mode", ["soft", "marginal", "vae-enum"])
def test_padding_does_not_change_a_sentence(mode):
    torch.manual_seed(0)
    model = Seq2Seq(ModelConfig(mode=mode, **TINY_MODEL), 30, 25).double().eval()
    sentences = random_sentences(5, torch.Generator().manual_seed(1))
    together = model(*make_batch(sentences))
    for row, sentence in enumerate(sentences):
        alone = model(*make_batch([sentence]))
        steps = len(sentence[1]) + 1
        sources = len(sentence[0])
        for name in ("enumerate",):
            a = alone.likelihood.enumerate()[0, :steps, :sources]
            b = together.likelihood.enumerate()[row, :steps, :sources]
            torch.testing.assert_close(a, b)
        torch.testing.assert_close(latent.masked_log_softmax(alone.prior, alone.mask)[0, :steps, :sources],
                                   latent.masked_log_softmax(together.prior, together.mask)[row, :steps, :sources])
        loss_alone = latent.objective(mode, alone.likelihood, alone.prior, alone.posterior, alone.mask).loss
        loss_together = latent.objective(mode, together.likelihood, together.prior, together.posterior,
                                         together.mask).loss
        torch.testing.assert_close(loss_alone[0, :steps], loss_together[row, :steps])
        if mode.startswith("vae"):
            torch.testing.assert_close(
                latent.masked_log_softmax(alone.posterior, alone.mask)[0, :steps, :sources],
                latent.masked_log_softmax(together.posterior, together.mask)[row, :steps, :sources])


def test_inference_network_ignores_batch_composition():
    torch.manual_seed(0)
    model = Seq2Seq(ModelConfig(mode="vae-enum", **TINY_MODEL), 30, 25).double().eval()
    generator = torch.Generator().manual_seed(5)
    first = random_sentences(3, generator)
    others = random_sentences(3, generator)
    a = model(*make_batch(first + others[:1])).posterior
    b = model(*make_batch(others[1:] + first)).posterior
    for row, sentence in enumerate(first):
        steps, sources = len(sentence[1]) + 1, len(sentence[0])
        torch.testing.assert_close(a[row, :steps, :sources], b[row + 2, :steps, :sources])


def test_enumeration_blocks_equal_one_block_in_value_and_gradient():
    torch.manual_seed(0)
    sentences = random_sentences(4, torch.Generator().manual_seed(2))
    results = []
    for block in (1, 7, 10_000):
        torch.manual_seed(0)
        model = Seq2Seq(ModelConfig(mode="marginal", enum_block=block, **TINY_MODEL), 30, 25).double()
        fwd = model(*make_batch(sentences))
        value = fwd.likelihood.enumerate()
        value.masked_fill(~fwd.mask, 0).sum().backward()
        results.append((value.detach(), model.output.generator.weight.grad.clone()))
    for value, grad in results[1:]:
        torch.testing.assert_close(value, results[0][0])
        torch.testing.assert_close(grad, results[0][1])


def test_soft_context_through_likelihood_equals_expected_context():
    """W_o[h; Σ p x] computed from projected memory equals projecting the expected context."""
    torch.manual_seed(0)
    model = Seq2Seq(ModelConfig(mode="soft", **TINY_MODEL), 30, 25).double().eval()
    src, src_lengths, tgt_in, tgt_out, tgt_lengths = make_batch(random_sentences(3, torch.Generator().manual_seed(3)))
    fwd = model(src, src_lengths, tgt_in, tgt_out, tgt_lengths)
    probs = latent.masked_log_softmax(fwd.prior, fwd.mask).exp()
    via_likelihood = fwd.likelihood(probs[:, :, None, :])[..., 0]
    encoded = model.encode(src, src_lengths)
    hidden, _ = model.decoder(encoded, tgt_in)
    context = probs @ encoded.memory
    log_probs = model.output.log_probs(model.output.from_hidden(hidden) + model.output.from_memory(context))
    direct = log_probs.gather(-1, tgt_out[..., None]).squeeze(-1)
    torch.testing.assert_close(via_likelihood, direct)
