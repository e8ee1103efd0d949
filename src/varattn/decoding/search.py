"""Decoding: batched beam search (and greedy search) over the next-word distribution of any model that
implements the decoding protocol (:mod:`varattn.models.protocol`: ``encode``, ``start``, ``step``): the
expected context for ``soft``; ``log Σ_s p(s) p(y|s)`` under the prior, exactly or over the K most
probable positions, for the latent modes.

Scoring, as in Deng et al. (2018), whose OpenNMT-py beam search this follows (docs/design.md §3):

- A hypothesis ``y = y_1 .. y_n </s>`` has ``|y| = n + 1`` output tokens (``</s>`` counted).
- End-of-sentence penalty: when ``</s>`` is proposed as output token number ``t`` (1-based, so
  ``t = |y|``), ``eos_norm · |x| / (t + 1)`` is subtracted from its log-probability, ``|x|`` being the
  source length in model (BPE) tokens. This is exactly the authors' ``Beam.advance``, where
  ``cur_len = len(next_ys)`` counts ``<s>`` and equals our ``t``. The penalty discourages short outputs,
  more so for long sources; it is part of the hypothesis's score from then on.
- Length normalisation (GNMT): a finished hypothesis is ranked by ``(log p(y) - penalty) / lp(|y|)``
  with ``lp(n) = ((5 + n) / 6) ** α``. OpenNMT-py's ``length_wu`` counted ``len(next_ys)`` = ``|y| + 1``
  (it includes ``<s>``); we use ``|y|`` as the GNMT paper does — the two differ by one token.
- Live hypotheses compete on their unnormalised sums (no length normalisation until they finish).
- Maximum length: ``a · |x| + b`` tokens before ``</s>``; at that length ``</s>`` is forced.
- ``<pad>`` and ``<s>`` are never produced.

The search itself is fairseq's, batched: every sentence keeps ``beam`` live rows (all sentences'
beams flattened into ``B · beam`` rows). Each step takes the best ``2 · beam`` candidates of a sentence;
those ending in ``</s>`` among its best ``beam`` finish, and the best ``beam`` others stay live. A sentence
is done once it has ``beam`` finished hypotheses (or reached its maximum length); done sentences leave
the batch. (OpenNMT-py instead stopped when ``</s>`` topped the beam, and let finished hypotheses occupy
beam slots.) Greedy search is beam search with one row: the tests check that they agree exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from varattn.data.vocab import BOS, EOS, PAD
from varattn.models.protocol import Decodable

NEG_INF = float("-inf")


@dataclass
class Hypothesis:
    """One output: target ids (no BOS/EOS); ``score``, what the search ranks by (log-probability minus
    the ``</s>`` penalty, divided by the length normalisation); per token the prior's argmax source
    position; and ``log_prob``, the model's plain ``log p(y | x)`` including ``</s>``."""

    tokens: list[int]
    score: float
    alignment: list[int]
    log_prob: float = 0.0


def max_lengths(src_lengths: Tensor, a: float, b: int) -> Tensor:
    """Maximum output length per sentence: ``a * |x| + b`` tokens, ``</s>`` excluded."""
    return (src_lengths.float() * a + b).long().clamp(min=1)


def length_penalty(length: int | Tensor, alpha: float):
    """GNMT length normalisation ``((5 + |y|) / 6) ** alpha`` (``|y|`` counts ``</s>``)."""
    return ((5.0 + length) / 6.0) ** alpha


def eos_penalty(src_lengths: Tensor, step: int, eos_norm: float) -> Tensor:
    """What is subtracted from ``log p(</s>)`` at decoding step ``step`` (0-based: ``step`` tokens are
    already out, so ``</s>`` would be output token ``t = step + 1``): ``eos_norm · |x| / (t + 1)``."""
    return eos_norm * src_lengths.double() / (step + 2)


def _scored_step(model: Decodable, encoded, state, prev: Tensor, step: int, limit: Tensor, eos_norm: float,
                 kmax: int):
    """One decoder step for rows ``[N]``: model log-probabilities ``[N, V]`` (as the model gives them,
    float32; the sums that use them are float64), the same in float64 with the search's adjustments
    (``</s>`` penalty, forbidden tokens, forced ``</s>`` at the length limit), the prior's argmax
    position ``[N]`` and the next state."""
    out = model.step(encoded, state, prev, kmax=kmax)
    log_probs, state = out.log_probs, out.state
    link = out.prior.masked_fill(~encoded.mask, NEG_INF).argmax(-1)
    adjusted = log_probs.to(torch.float64, copy=True)  # the one [N, V] copy of a step
    adjusted[:, PAD] = NEG_INF
    adjusted[:, BOS] = NEG_INF
    adjusted[:, EOS] -= eos_penalty(encoded.src_lengths, step, eos_norm)
    forced = step >= limit
    if bool(forced.any()):
        eos_only = torch.full_like(adjusted, NEG_INF)
        eos_only[:, EOS] = adjusted[:, EOS]
        adjusted = torch.where(forced[:, None], eos_only, adjusted)
    return log_probs, adjusted, link, state


@torch.no_grad()
def greedy(model: Decodable, src: Tensor, src_lengths: Tensor, *, max_len_a: float = 1.5,
           max_len_b: int = 10, kmax: int = 0, alpha: float = 0.0, eos_norm: float = 0.0
           ) -> list[Hypothesis]:
    """Batched greedy decoding (the arg max of the adjusted log-probabilities at each step).
    src ``[B, S]``, src_lengths ``[B]`` -> one hypothesis per row."""
    encoded = model.encode(src, src_lengths)
    state = model.start(encoded)
    rows, device = src.size(0), src.device
    limit = max_lengths(src_lengths, max_len_a, max_len_b).to(device)
    prev = torch.full((rows,), BOS, dtype=torch.long, device=device)
    done = torch.zeros(rows, dtype=torch.bool, device=device)
    adjusted_sum = torch.zeros(rows, dtype=torch.float64, device=device)
    plain_sum = torch.zeros_like(adjusted_sum)
    outputs, links = [], []
    for t in range(int(limit.max()) + 1):
        log_probs, adjusted, link, state = _scored_step(model, encoded, state, prev, t, limit, eos_norm, kmax)
        choice = adjusted.argmax(-1)
        adjusted_sum += torch.where(done, 0.0, adjusted.gather(1, choice[:, None]).squeeze(1))
        plain_sum += torch.where(done, 0.0, log_probs.gather(1, choice[:, None]).squeeze(1).double())
        outputs.append(torch.where(done, EOS, choice))
        links.append(link)
        done |= choice == EOS
        prev = choice
        if bool(done.all()):
            break
    tokens = torch.stack(outputs, 1).tolist()
    align = torch.stack(links, 1).tolist()
    hypotheses = []
    for row in range(rows):
        length = tokens[row].index(EOS)
        score = float(adjusted_sum[row]) / length_penalty(length + 1, alpha)
        hypotheses.append(Hypothesis(tokens[row][:length], score, align[row][:length], float(plain_sum[row])))
    return hypotheses


@dataclass
class _Beams:
    """The live rows of the sentences still being decoded: ``b`` sentences x ``k`` rows, flattened.

    sentence ``[b]`` original indices; scores / plain ``[b, k]`` adjusted and plain log-probability sums
    (float64; ``-inf`` marks an empty row); tokens / links ``[b * k, t]`` the words so far and the prior's
    argmax position for each; prev ``[b * k]`` the last word; limit ``[b * k]`` maximum lengths."""

    sentence: Tensor
    encoded: object
    state: object
    scores: Tensor
    plain: Tensor
    tokens: Tensor
    links: Tensor
    prev: Tensor
    limit: Tensor

    def select(self, sentences: Tensor, rows: Tensor) -> "_Beams":
        """Keep ``sentences`` (indices into ``[b]``) and their rows ``rows`` (indices into ``[b * k]``)."""
        return _Beams(self.sentence[sentences], self.encoded.index_select(rows), self.state.index_select(rows),
                      self.scores[sentences], self.plain[sentences], self.tokens[rows], self.links[rows],
                      self.prev[rows], self.limit[rows])


def _start(model: Decodable, src: Tensor, src_lengths: Tensor, beam: int, max_len_a: float, max_len_b: int
           ) -> _Beams:
    rows = torch.arange(src.size(0), device=src.device).repeat_interleave(beam)
    encoded = model.encode(src, src_lengths).index_select(rows)
    scores = torch.full((src.size(0), beam), NEG_INF, dtype=torch.float64, device=src.device)
    scores[:, 0] = 0.0  # one live row per sentence at first: the others would duplicate it
    empty = torch.zeros(rows.numel(), 0, dtype=torch.long, device=src.device)
    return _Beams(torch.arange(src.size(0), device=src.device), encoded, model.start(encoded), scores,
                  torch.zeros_like(scores), empty, empty, torch.full_like(rows, BOS),
                  max_lengths(src_lengths, max_len_a, max_len_b).to(src.device)[rows])


def _finish(beams: _Beams, finished: list[list[Hypothesis]], ending: Tensor, top: Tensor, origin: Tensor,
            log_probs: Tensor, step: int, alpha: float) -> None:
    """Record the candidates marked in ``ending`` ``[b, 2k]`` (all ending in ``</s>``) as hypotheses."""
    which, rank = ending.nonzero(as_tuple=True)
    rows = origin[which, rank]
    plain = beams.plain.view(-1)[rows] + log_probs[rows, EOS]
    scores = top[which, rank] / length_penalty(step + 1, alpha)
    for sentence, tokens, links, score, total in zip(beams.sentence[which].tolist(), beams.tokens[rows].tolist(),
                                                     beams.links[rows].tolist(), scores.tolist(), plain.tolist()):
        finished[sentence].append(Hypothesis(tokens, score, links, total))


def _advance(beams: _Beams, log_probs: Tensor, adjusted: Tensor, link: Tensor, state, step: int,
             finished: list[list[Hypothesis]], alpha: float) -> _Beams:
    """Extend every live row by one word: finish the best candidates that end in ``</s>``, keep the best
    ``k`` others per sentence."""
    b, k = beams.scores.shape
    vocab = adjusted.size(-1)
    total = (beams.scores.view(-1, 1) + adjusted).view(b, k * vocab)
    top, index = total.topk(2 * k, dim=-1)  # at most k of them end in </s>: one per row
    origin = index // vocab + torch.arange(b, device=index.device)[:, None] * k
    word = index % vocab
    is_eos = word == EOS
    rank = torch.arange(2 * k, device=index.device)
    ending = is_eos & (rank < k) & top.isfinite()
    if bool(ending.any()):
        _finish(beams, finished, ending, top, origin, log_probs, step, alpha)
    keep = (is_eos.long() * 2 * k + rank).argsort(-1)[:, :k]  # the best k candidates not ending in </s>
    rows, words = origin.gather(1, keep).view(-1), word.gather(1, keep).view(-1)
    plain = beams.plain.view(-1)[rows] + log_probs[rows, words]
    return _Beams(beams.sentence, beams.encoded, state.index_select(rows), top.gather(1, keep),
                  plain.view(b, k), torch.cat([beams.tokens[rows], words[:, None]], 1),
                  torch.cat([beams.links[rows], link[rows, None]], 1), words, beams.limit)


@torch.no_grad()
def beam_search(model: Decodable, src: Tensor, src_lengths: Tensor, *, beam: int = 1, alpha: float = 0.0,
                eos_norm: float = 0.0, max_len_a: float = 1.5, max_len_b: int = 10, kmax: int = 0,
                n_best: int = 1) -> list[list[Hypothesis]]:
    """Batched beam search. src ``[B, S]`` (padded with PAD), src_lengths ``[B]`` -> per sentence its
    ``n_best`` best hypotheses, best first (fewer only when fewer exist). See the module docstring for
    the scoring. ``n_best`` must not exceed ``beam``."""
    if not 1 <= n_best <= beam:
        raise ValueError(f"n_best={n_best} must lie between 1 and beam={beam}")
    finished: list[list[Hypothesis]] = [[] for _ in range(src.size(0))]
    beams = _start(model, src, src_lengths, beam, max_len_a, max_len_b)
    step = 0
    while beams.sentence.numel():
        log_probs, adjusted, link, state = _scored_step(model, beams.encoded, beams.state, beams.prev, step,
                                                        beams.limit, eos_norm, kmax)
        beams = _advance(beams, log_probs, adjusted, link, state, step, finished, alpha)
        counts = torch.tensor([len(finished[s]) for s in beams.sentence.tolist()], device=src.device)
        going = (counts < beam) & (beams.limit.view(-1, beam)[:, 0] > step)
        if not bool(going.all()):
            alive = going.nonzero(as_tuple=True)[0]
            rows = (alive[:, None] * beam + torch.arange(beam, device=src.device)).view(-1)
            beams = beams.select(alive, rows)
        step += 1
    return [sorted(found, key=lambda h: -h.score)[:n_best] for found in finished]
