"""``model.emission: source``: the word predicted from the attended source word alone (a lexical model),
its enumeration computed once per source position, against the general per-cell path."""

import pytest
import torch

from varattn import latent
from varattn.config import ModelConfig
from varattn.models.seq2seq import Seq2Seq
from varattn.modules.output import OutputLayer, SourceLikelihood, TokenLikelihood

from conftest import TINY_MODEL
from test_model import make_batch, random_sentences


def test_enumeration_equals_the_per_cell_path_and_one_hot_calls():
    torch.manual_seed(0)
    layer = OutputLayer(8, 6, 5, 11, dropout=0.0).double()
    out_memory = torch.randn(2, 4, 5, dtype=torch.float64)
    targets = torch.randint(0, 11, (2, 3))
    hidden_proj = layer.query(torch.randn(2, 3, 8, dtype=torch.float64), "source")
    fast = SourceLikelihood(layer, hidden_proj, out_memory, targets, block=7).enumerate()
    general = TokenLikelihood(layer, hidden_proj, out_memory, targets, block=7).enumerate()
    assert torch.allclose(fast, general, atol=1e-12)
    one_hot = torch.eye(4, dtype=torch.float64).expand(2, 3, 4, 4)
    called = SourceLikelihood(layer, hidden_proj, out_memory, targets, block=7)(one_hot)
    assert torch.allclose(called.double(), fast, atol=1e-5)  # calls give float32


@pytest.mark.parametrize("emission", ["source", "word"])
@pytest.mark.parametrize("mode", ["hmm", "marginal", "soft"])
def test_the_decoder_state_does_not_reach_the_emission(mode, emission):
    model = Seq2Seq(ModelConfig(mode=mode, emission=emission, **TINY_MODEL), 30, 25).double().eval()
    batch = make_batch(random_sentences(3, torch.Generator().manual_seed(1)))
    out = model(*batch)
    if mode != "soft":
        emissions = out.likelihood.enumerate()
        # the same target word at two steps of a sentence has the same emission row
        tgt_out = batch[3]
        for b in range(tgt_out.size(0)):
            seen = {}
            for t, word in enumerate(tgt_out[b].tolist()):
                if word and word in seen:
                    assert torch.allclose(emissions[b, t], emissions[b, seen[word]])
                seen.setdefault(word, t)
    loss, _ = latent.batch_objective(model.mode, out)
    loss.backward()
    assert model.output.from_hidden.weight.grad is None or model.output.from_hidden.weight.grad.abs().sum() == 0
    used = model.output.from_memory if emission == "source" else model.word_memory
    assert used.weight.grad.abs().sum() > 0
