"""Alignment extraction and export: what a trained model attends to, teacher-forced on the reference.

For every sentence pair (x, y) the model reads the reference y as decoder input (teacher forcing) and
gives, per target position t, a distribution over the source tokens:

- ``prior``: p(z_t | x, y<t), the attention the decoder computes (a latent model's prior);
- ``posterior``: q(z_t | x, y), the inference network's, for ``vae-*`` models;
- ``exact-posterior``: p(z_t | x, y<=t) ∝ p(z_t | x, y<t) p(y_t | z_t, x, y<t), the model's own Bayes
  posterior for the current word, for every mode whose prior is enumerated (``marginal``, ``hard-*``,
  ``vae-enum``, ...): the enumeration the likelihood computes anyway, so it needs no inference network;
- ``attention``: a ``soft`` model's attention (the same network as a prior, named as it is used);
- for ``hmm`` (a first-order chain): ``prior`` is the chain's predictive p(z_t | x, y<t), ``posterior``
  the exact posterior marginal p(z_t | x, y) by forward–backward (it reads the whole reference, past
  and future), ``viterbi`` the most probable path as one-hot rows;
- ``cross``: a Transformer's soft cross-attention (``model.select_heads(layer, head)``; default the
  average over decoder layers and heads), the baseline a latent alignment is compared with.

For ``vae-dirichlet`` the prior and posterior are Dirichlets; the matrices hold their means (the
softmax of the scores). Matrices have one row per target token **and one for** ``</s>`` (the model
also chooses where to look when it ends the sentence, and the pictures show it), and one column per
source token; the row for ``</s>`` is never exported as a Pharaoh link nor scored. Tokens are the
model's (BPE pieces); probabilities are rounded to 6 decimals once, at extraction, so the Pharaoh
links, the AER and the pictures all derive from exactly the numbers written to JSON.

Outputs of :func:`write_exports` in the output folder: ``alignments.json`` (tokens, matrices,
entropies), per distribution ``{name}.align`` (Pharaoh ``i-j`` over pieces, 0-based: the argmax source
piece of every target piece, dropped when its probability is below the threshold) and
``{name}.words.align`` (over words: each target word's most probable source word in the word matrix
W of :meth:`PairAlignment.word_matrix`, the probabilities of its pieces summed over each source word
and averaged over the target word's pieces — the forward word link :func:`argmax_links` defines, the one
every score and ``links.align`` use). With ``transpose`` (a reverse run's exports) the ``.align`` files
are written source-target in the forward run's orientation, as ``links.align``; ``alignments.json``
keeps the reverse run's own matrices (its rows are the forward source's pieces).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from varattn import stopping
from varattn.analysis import aer

from varattn import latent
from varattn.latent import get_mode
from varattn.data.text.batching import IdPairs, TokenBatcher, collate
from varattn.data.text.pharaoh import format_links
from varattn.data.text.prepared import PreparedData
from varattn.errors import UserError
from varattn.models.protocol import CrossAttentionMaps
from varattn.tasks.translation import check_vocabularies
from varattn.training.runs import LoadedRun

END = "</s>"
DIGITS = 6


#: every matrix name a model may give (``cross``: a Transformer's soft cross-attention)
DISTRIBUTIONS = ("prior", "posterior", "exact-posterior", "viterbi", "attention", "cross")


def distributions(mode: str, has_posterior: bool) -> tuple[str, ...]:
    """The names of the matrices a model of ``mode`` gives, in display order."""
    record = get_mode(mode)
    if record.soft_context:
        return ("attention",)
    if record.chain:
        return ("prior", "posterior", "viterbi")
    names = ("prior", "posterior") if has_posterior else ("prior",)
    return names + ("exact-posterior",) if record.enumerable else names


def argmax_links(matrix: np.ndarray, threshold: float = 0.0) -> set[aer.Link]:
    """Links (i, j) of an ``[S, T]`` matrix whose columns are distributions over the source: for every
    target j its most probable source i, kept when ``matrix[i, j] >= threshold`` (else j stays unlinked).
    Over words this is the one definition of a forward word link: ``{name}.words.align``, the scores of
    ``summary.json``, ``links.align`` of one direction and the directions the symmetrisations combine."""
    best = matrix.argmax(0)
    return {(int(best[j]), j) for j in range(matrix.shape[1]) if matrix[best[j], j] >= threshold}


@dataclass
class PairAlignment:
    """One aligned sentence pair.

    src: source tokens [S]; tgt: reference target tokens followed by ``</s>`` [T + 1]; matrices: name ->
    probabilities [T + 1, S] (rows sum to 1); entropy: name -> mean entropy in nats over the T + 1 rows.
    """

    index: int
    src: list[str]
    tgt: list[str]
    matrices: dict[str, np.ndarray]
    entropy: dict[str, float]
    translation: str | None = None
    gold: aer.GoldLinks | None = field(default=None, repr=False)  # over words, when known
    src_words: list[str] | None = None  # the words links index (the user's, for word-level input)
    tgt_words: list[str] | None = None

    def links(self, name: str, threshold: float = 0.0) -> set[aer.Link]:
        """Pharaoh links (source piece i, target piece j): the argmax of each real target row, kept when
        its probability is at least ``threshold``; the ``</s>`` row is left out."""
        matrix = self.matrices[name][: len(self.tgt) - 1]
        best = matrix.argmax(-1)
        return {(int(i), j) for j, i in enumerate(best) if matrix[j, i] >= threshold}

    def word_matrix(self, name: str) -> np.ndarray:
        """W ``[S_words, T_words]``: W[i, j] is the probability that target word j (its pieces on average)
        looks at source word i (its pieces summed); each column sums to 1; the ``</s>`` row is left out."""
        pieces = self.matrices[name][: len(self.tgt) - 1]  # [T_pieces, S_pieces]
        src_word = np.asarray(aer.word_index(self.src))
        tgt_word = np.asarray(aer.word_index(self.tgt[:-1]))
        S, T = int(src_word.max()) + 1, int(tgt_word.max()) + 1
        by_src = np.zeros((pieces.shape[0], S))
        np.add.at(by_src.T, src_word, pieces.T)  # [T_pieces, S]: summed over each source word's pieces
        out = np.zeros((S, T))
        np.add.at(out.T, tgt_word, by_src)
        return out / np.bincount(tgt_word, minlength=T)[None, :]

    def word_links(self, name: str, threshold: float = 0.0) -> set[aer.Link]:
        """Word links (source word i, target word j): the forward word link of every target word, the argmax
        of its column of :meth:`word_matrix`, kept when W[i, j] is at least ``threshold`` (see
        :func:`argmax_links`)."""
        return argmax_links(self.word_matrix(name), threshold)

    def to_json(self) -> dict:
        record = {"index": self.index, "src": self.src, "tgt": self.tgt,
                  "entropy": {k: round(v, 4) for k, v in self.entropy.items()}}
        if self.translation is not None:
            record["translation"] = self.translation
        if self.src_words is not None:
            record["src_words"], record["tgt_words"] = self.src_words, self.tgt_words
        record.update({name: matrix.tolist() for name, matrix in self.matrices.items()})
        return record


CHUNK = 256  # consecutive pairs sorted into batches together (see extract)


@torch.no_grad()
def extract(run: LoadedRun, src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]],
            src_tokens: Sequence[list[str]], tgt_tokens: Sequence[list[str]], *,
            indices: Sequence[int] | None = None, progress: bool = False) -> list[PairAlignment]:
    """Teacher-forced matrices for parallel id sequences (no BOS/EOS), batched by tokens; in order.

    ``src_tokens``/``tgt_tokens`` are the strings shown for the ids (same lengths); ``indices`` the pair
    numbers recorded (default 0, 1, ...). When SIGINT or SIGTERM asks to stop (:mod:`varattn.stopping`),
    the batch in progress is finished and only the pairs complete from the first one on are returned.
    """
    model, device = run.model, run.device
    for n, (s, t) in enumerate(zip(src_ids, tgt_ids)):
        if not len(s) or not len(t):
            raise UserError(f"pair {n + 1}: empty source or target — remove empty lines from both files")
    names = distributions(model.config.mode, model.has_posterior)
    pairs = IdPairs(src_ids, tgt_ids)
    src_lengths, tgt_lengths = [len(s) for s in src_ids], [len(t) for t in tgt_ids]
    results: list[PairAlignment | None] = [None] * len(src_ids)
    # sorted by length within chunks of the input: what a signal leaves undone is at most one chunk
    batches = [rows + start for start in range(0, len(src_ids), CHUNK)
               for rows in TokenBatcher(src_lengths[start:start + CHUNK], tgt_lengths[start:start + CHUNK],
                                        run.config.data.eval_max_tokens, shuffle=False).batches(0)]
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc="aligning", unit="batch", leave=False)
    was_training = model.training
    model.eval()
    for rows in batches:
        batch = collate(pairs, rows).to(device)
        fwd = model(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, batch.tgt_lengths)
        scores = _chain_scores(fwd) if model.mode.chain else _independent_scores(fwd, names)
        probs = {k: latent.masked_log_softmax(v.float(), fwd.mask).exp().cpu().numpy() for k, v in scores.items()}
        ents = {k: latent.entropy(v.float(), fwd.mask).masked_fill(~fwd.query_weights, 0.0).sum(-1).cpu()
                for k, v in scores.items()}
        cross = (model.cross_alignment(batch.src, batch.src_lengths, batch.tgt_in)
                 if isinstance(model, CrossAttentionMaps) else None)
        if cross is not None:  # a Transformer's soft cross-attention: its chosen layer/head, or their average
            probs["cross"] = cross.float().cpu().numpy()
            ents["cross"] = -(cross * cross.clamp_min(1e-30).log()).sum(-1).masked_fill(~fwd.query_weights, 0.0).sum(-1).cpu()
        for row, i in enumerate(rows.tolist()):
            S, T = len(src_ids[i]), len(tgt_ids[i]) + 1
            results[i] = PairAlignment(
                index=int(indices[i]) if indices is not None else i,
                src=list(src_tokens[i]), tgt=list(tgt_tokens[i]) + [END],
                matrices={k: p[row, :T, :S].astype(np.float64).round(DIGITS) for k, p in probs.items()},
                entropy={k: float(e[row]) / T for k, e in ents.items()})
        if stopping.requested():  # SIGINT/SIGTERM: keep the pairs complete from the first one on
            break
    if hasattr(batches, "close"):  # a progress bar left early: clear it from the terminal
        batches.close()
    model.train(was_training)
    complete = next((n for n, pair in enumerate(results) if pair is None), len(results))
    return results[:complete]  # type: ignore[return-value]


def _independent_scores(fwd: latent.LatentOutput, names: Sequence[str]) -> dict:
    """Log-scores ``[B, T, S]`` of the prior, q where there is one, and the exact posterior of the current
    word: log p(z_t = s | x, y<t) + log p(y_t | z_t = s), normalised over s by the caller. A ``soft``
    model's one matrix is its attention, named ``names[0]``."""
    scores = {names[0]: fwd.prior}
    if "posterior" in names:
        scores["posterior"] = fwd.posterior
    if "exact-posterior" in names:
        log_prior = latent.masked_log_softmax(fwd.prior.float(), fwd.mask)
        emissions = fwd.likelihood.enumerate().float()
        scores["exact-posterior"] = (log_prior + emissions).masked_fill(~fwd.mask, float("-inf"))
    return scores


def _chain_scores(fwd: latent.LatentOutput) -> dict:
    """A chain model's three matrices as log-scores ``[B, T, S]``: its predictive, the forward–backward
    posterior marginals, and the Viterbi path (log 1 on the path, log 0 elsewhere)."""
    emissions = fwd.likelihood.enumerate()
    steps = fwd.query_weights.bool()
    forward = latent.chain_forward(emissions, fwd.prior, fwd.jumps, fwd.mask, steps)
    marginals = latent.chain_marginals(emissions, fwd.prior, fwd.jumps, fwd.mask, steps)
    path, _ = latent.chain_viterbi(emissions, fwd.prior, fwd.jumps, fwd.mask, steps)
    one_hot = torch.nn.functional.one_hot(path, emissions.size(-1)).bool()
    return {"prior": forward.predictive, "posterior": marginals.clamp_min(1e-30).log(),
            "viterbi": torch.where(one_hot, 0.0, -1e30)}


def _check_vocab(run: LoadedRun, data: PreparedData) -> None:
    check_vocabularies(run, data, "align")


def _tokens(lines: list[str], ids: list[np.ndarray], vocab) -> list[list[str]]:
    """Display tokens: the split's text where it matches the ids in length, else the vocabulary's."""
    out = []
    for line, row in zip(lines, ids):
        words = line.split()
        out.append(words if len(words) == len(row) else vocab.decode(row.tolist()))
    return out


def align_split(run: LoadedRun, data: PreparedData, split_name: str, *, limit: int | None = None,
                progress: bool = False) -> list[PairAlignment]:
    """Align the first ``limit`` pairs (default all) of a prepared split; gold links attached if any."""
    _check_vocab(run, data)
    split = data.split(split_name)
    count = len(split) if limit is None else min(limit, len(split))
    src_ids = [split.src(i) for i in range(count)]
    tgt_ids = [split.tgt(i) for i in range(count)]
    src_tokens = _tokens(split.source_lines()[:count], src_ids, data.src_vocab)
    tgt_tokens = _tokens(split.target_lines()[:count], tgt_ids, data.tgt_vocab)
    pairs = extract(run, src_ids, tgt_ids, src_tokens, tgt_tokens, progress=progress)
    gold = split.gold_alignments()
    if gold is not None:
        attach_gold(pairs, [aer.GoldLinks.of(links) for links in gold[:count]],
                    str(split.folder / f"{split_name}.align"))
    return pairs


def align_words(run: LoadedRun, src_words: Sequence[Sequence[str]], tgt_words: Sequence[Sequence[str]], *,
                progress: bool = False) -> list[PairAlignment]:
    """Align pairs given as words (tokenised already): each word becomes its pieces with the run's
    :meth:`~varattn.data.text.tokenize.Pipeline.encode_words` (escaping matched, lowercased, BPE; never
    re-tokenised), so word k of the input is word k of every word-level link."""
    pipeline = run.data.pipeline
    src_tokens = [[p for pieces in pipeline.encode_words(words) for p in pieces] for words in src_words]
    tgt_tokens = [[p for pieces in pipeline.encode_words(words) for p in pieces] for words in tgt_words]
    src_ids = [run.data.src_vocab.encode(tokens) for tokens in src_tokens]
    tgt_ids = [run.data.tgt_vocab.encode(tokens) for tokens in tgt_tokens]
    pairs = extract(run, src_ids, tgt_ids, src_tokens, tgt_tokens, progress=progress)
    for pair, src, tgt in zip(pairs, src_words, tgt_words):
        pair.src_words, pair.tgt_words = list(src), list(tgt)
        if len(set(aer.word_index(pair.src))) != len(src) or len(set(aer.word_index(pair.tgt[:-1]))) != len(tgt):
            raise UserError(f"pair {pair.index + 1}: a word ends in '@@', the BPE continuation mark, so its pieces "
                            "cannot be told from the next word's — remove or rewrite that token")
    return pairs


def check_reverse(run: LoadedRun, reverse: LoadedRun) -> None:
    """A UserError unless ``reverse`` translates the other way with the same vocabularies (source <-> target)."""
    where = f"{reverse.checkpoint.parent}"
    if reverse.data.src_vocab == run.data.src_vocab and reverse.data.tgt_vocab == run.data.tgt_vocab:
        raise UserError(f"{where}: translates in the same direction as {run.checkpoint.parent} — give a run "
                        "trained the other way (data.reverse=true on the same prepared folder)")
    langs = (run.data.pipeline.src_lang, run.data.pipeline.tgt_lang)
    reverse_langs = (reverse.data.pipeline.tgt_lang, reverse.data.pipeline.src_lang)
    if langs != reverse_langs and langs != ("src", "tgt") and reverse_langs != ("tgt", "src"):
        raise UserError(f"{where}: translates {reverse_langs[1]}->{reverse_langs[0]} but the reverse of "
                        f"{run.checkpoint.parent} is {langs[1]}->{langs[0]} — give a run of the opposite direction")
    if reverse.data.src_vocab != run.data.tgt_vocab or reverse.data.tgt_vocab != run.data.src_vocab:
        raise UserError(f"{where}: its vocabularies are not those of {run.checkpoint.parent} swapped — train "
                        "the reverse run on the same prepared folder with data.reverse=true")


def attach_gold(pairs: list[PairAlignment], gold: Sequence[aer.GoldLinks], where: str) -> None:
    """Give each pair its gold word links, checking every link lies inside the pair."""
    if len(gold) < len(pairs):
        raise UserError(f"{where}: has {len(gold)} lines but {len(pairs)} pairs are aligned — give one gold line "
                        "per sentence pair")
    for n, (pair, links) in enumerate(zip(pairs, gold), 1):
        src_words = len(set(aer.word_index(pair.src)))
        tgt_words = len(set(aer.word_index(pair.tgt[:-1])))
        aer.check_bounds(links, src_words, tgt_words, f"{where}:{n}")
        pair.gold = links


def scores(pairs: Sequence[PairAlignment], threshold: float = 0.0) -> dict[str, aer.Counts]:
    """Word-level AER counts of each distribution against the pairs' gold links (all pairs need them)."""
    if not pairs or any(pair.gold is None for pair in pairs):
        return {}
    golds = [pair.gold for pair in pairs]
    return {name: aer.score([pair.word_links(name, threshold) for pair in pairs], golds)
            for name in pairs[0].matrices}


def split_aer(run: LoadedRun, data: PreparedData, split_name: str, limit: int | None = None) -> dict:
    """For `varattn evaluate`: ``aer``, ``align_precision``, ``align_recall`` per distribution (argmax
    links, no threshold, word level) over the first ``limit`` pairs (default all) when the split has gold
    alignments; otherwise ``{}``."""
    if data.split(split_name).gold_alignments() is None:
        return {}
    found = scores(align_split(run, data, split_name, limit=limit))
    return {"aer": {k: c.aer for k, c in found.items()},
            "align_precision": {k: c.precision for k, c in found.items()},
            "align_recall": {k: c.recall for k, c in found.items()}}


def translate(run: LoadedRun, pairs: list[PairAlignment], progress: bool = False) -> None:
    """Fill each pair's ``translation`` with the model's greedy output for its source (the run's decoding
    settings with beam 1: the report shows what the model says, fast enough to draw for every pair)."""
    import dataclasses

    from varattn.data.text.tokenize import remove_bpe
    from varattn.decoding.translate import decode_ids

    src_ids = [run.data.src_vocab.encode(pair.src) for pair in pairs]
    found = decode_ids(run, src_ids, dataclasses.replace(run.config.decode, beam=1), progress=progress)
    for pair, hypothesis in zip(pairs, found):
        pair.translation = remove_bpe(" ".join(run.data.tgt_vocab.decode(hypothesis.tokens))).strip()


def write_exports(pairs: Sequence[PairAlignment], out: Path, *, threshold: float = 0.0,
                  meta: dict | None = None, transpose: bool = False) -> list[Path]:
    """``alignments.json``, ``{name}.align`` and ``{name}.words.align`` in ``out``; returns the paths.
    ``transpose``: the pairs are a reverse run's, and its links are written ``j-i`` (forward source
    first, as every other link file)."""
    out.mkdir(parents=True, exist_ok=True)
    names = list(pairs[0].matrices) if pairs else []
    document = {**(meta or {}), "distributions": names, "threshold": threshold,
                "rows": "one per target token, then one for </s> (not exported to Pharaoh)",
                "pairs": [pair.to_json() for pair in pairs]}
    written = [out / "alignments.json"]
    written[0].write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    for name in names:
        for suffix, words in (("align", False), ("words.align", True)):
            found = [pair.word_links(name, threshold) if words else pair.links(name, threshold) for pair in pairs]
            lines = [format_links({(j, i) for i, j in links} if transpose else links) for links in found]
            path = out / f"{name}.{suffix}"
            path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
            written.append(path)
    return written
