"""Ensembles: the search over averaged next-word probabilities against exhaustive search with the
members' teacher-forced probabilities, and the command line's checks."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from varattn.data.vocab import BOS, EOS, PAD
from varattn.decoding.ensemble import Ensemble
from varattn.decoding.search import beam_search, greedy, length_penalty

from test_search import same, sources, tiny_model, token_log_probs

pytestmark = pytest.mark.usefixtures("one_thread")


def test_wide_beam_over_an_ensemble_equals_exhaustive_search():
    """A soft and a marginal model: every output of at most 3 words (V = 6) scored as
    Σ_t log ½ (p_soft(y_t | y_<t) + p_marginal(y_t | y_<t)) from each model's own teacher-forced pass;
    the ensemble's wide beam must list them in that order with those log-probabilities."""
    members = [tiny_model("soft", tgt_vocab=6, seed=3), tiny_model("marginal", tgt_vocab=6, seed=4)]
    ensemble = Ensemble(members)
    src, lengths = sources([4, 6])
    alpha, eos_norm, most = 1.0, 0.5, 3
    found = beam_search(ensemble, src, lengths, beam=64, n_best=8, alpha=alpha, eos_norm=eos_norm,
                        max_len_a=0.0, max_len_b=most)
    words = [tok for tok in range(6) if tok not in (PAD, BOS, EOS)]
    outputs = [list(y) for n in range(most + 1) for y in itertools.product(words, repeat=n)]
    for row in range(len(lengths)):
        x = int(lengths[row])
        first, second = (token_log_probs(m, src[row], x, outputs)[0] for m in members)
        mixed = (torch.logaddexp(first, second) - math.log(2)).masked_fill((first == 0) & (second == 0), 0.0)
        log_probs = mixed.sum(1).tolist()
        single = [first.sum(1).tolist(), second.sum(1).tolist()]
        scores = [(lp - eos_norm * x / (len(y) + 2)) / length_penalty(len(y) + 1, alpha)
                  for lp, y in zip(log_probs, outputs)]
        ranking = sorted(range(len(outputs)), key=lambda i: -scores[i])[:8]
        assert [h.tokens for h in found[row]] == [outputs[i] for i in ranking]
        assert [h.log_prob for h in found[row]] == pytest.approx([log_probs[i] for i in ranking], rel=1e-5)
        # the mixture is neither member: it differs from each of them on some output
        assert max(abs(a - b) for a, b in zip(log_probs, single[0])) > 1e-3
        assert max(abs(a - b) for a, b in zip(log_probs, single[1])) > 1e-3


@pytest.mark.parametrize("mode", ["soft", "marginal", "hmm"])
def test_an_ensemble_of_one_model_twice_decodes_as_the_model(mode):
    model = tiny_model(mode)
    src, lengths = sources([7, 3, 9, 1, 5])
    settings = dict(alpha=0.6, eos_norm=0.3, max_len_a=1.0, max_len_b=3)
    alone = beam_search(model, src, lengths, beam=4, n_best=2, **settings)
    twice = beam_search(Ensemble([model, model]), src, lengths, beam=4, n_best=2, **settings)
    for expected, found in zip(alone, twice):
        same(found, expected, rel=1e-5)
    same(greedy(Ensemble([model, model]), src, lengths, **settings), greedy(model, src, lengths, **settings),
         rel=1e-5)


def test_members_must_share_the_target_vocabulary():
    with pytest.raises(ValueError, match="target vocabularies"):
        Ensemble([tiny_model("soft", tgt_vocab=6), tiny_model("soft", tgt_vocab=7)])
    with pytest.raises(ValueError, match="at least two"):
        Ensemble([tiny_model("soft")])
