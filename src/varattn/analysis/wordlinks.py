r"""Word alignments from alignment matrices: one direction or two, links with their probabilities.

A model gives, per target piece t, a distribution over source pieces (a row of a
:class:`~varattn.analysis.align.PairAlignment` matrix). Over *words* (a word is its BPE pieces):

.. math::
    W[i, j] = \frac{1}{|j|} \sum_{t \in j} \sum_{s \in i} p(z_t = s),

the probability that target word j (its pieces on average) looks at source word i; each column of the
``[S_words, T_words]`` matrix sums to 1. Links are drawn from W:

- ``argmax``: for each target word, its most probable source word, kept when ``W >= threshold`` — below
  it the target word is left unlinked (a NULL decision); a source word may take several target words.
  This is the forward word link everywhere (:func:`varattn.analysis.align.argmax_links`): the
  ``{name}.words.align`` exports and the per-distribution scores of ``summary.json`` use it too;
- ``threshold``: every cell with ``W >= threshold`` (a target word may link to several source words or
  to none).

With a second run trained the other way, its matrix over the same words, transposed to ``[S, T]``, is the
reverse direction R[i, j] = p(target j | source i); the two link sets are symmetrised by a heuristic of
:mod:`varattn.analysis.symmetrize`, or the two matrices are combined (``soft-product``, ``soft-mean``) and
thresholded. Every link carries a probability: W[i, j] for one direction, the combined value for soft
symmetrisation, and (W + R) / 2 for the hard heuristics.

A sentence's score, for filtering noisy pairs, is the mean log probability of its links (0 links:
``-inf``) and the prior's mean entropy per target token (the model's uncertainty before reading the
reference).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from varattn.analysis import aer, symmetrize
from varattn.analysis.align import PairAlignment, argmax_links
from varattn.data.text.tokenize import remove_bpe
from varattn.errors import UserError

Link = tuple[int, int]
METHODS = ("argmax", "threshold")


def words(pieces: Sequence[str]) -> list[str]:
    """Model pieces -> the words they make (``["bicy@@", "cle"]`` -> ``["bicycle"]``)."""
    return remove_bpe(" ".join(pieces)).split()


def src_words(pair: PairAlignment) -> list[str]:
    return list(pair.src_words) if pair.src_words is not None else words(pair.src)


def tgt_words(pair: PairAlignment) -> list[str]:
    return list(pair.tgt_words) if pair.tgt_words is not None else words(pair.tgt[:-1])


def word_matrix(pair: PairAlignment, name: str) -> np.ndarray:
    """W ``[S_words, T_words]`` of one distribution (see the module docstring); the ``</s>`` row is left out."""
    return pair.word_matrix(name)


def extract(matrix: np.ndarray, method: str = "argmax", threshold: float = 0.0) -> set[Link]:
    """Links (i, j) of an ``[S, T]`` word matrix by ``method`` (see the module docstring)."""
    if method == "argmax":
        return argmax_links(matrix, threshold)
    if method == "threshold":
        return symmetrize.soft_links(matrix, threshold)
    raise ValueError(f"unknown link extraction {method!r}; choose one of {', '.join(METHODS)}")


@dataclass
class WordAlignment:
    """The chosen word links of one sentence pair, sorted, with one probability per link.

    ``entropy``: the prior's (or a soft model's attention's) mean entropy in nats, per direction.
    """

    index: int
    src: list[str]
    tgt: list[str]
    links: list[Link]
    probs: list[float]
    entropy: list[float]

    @property
    def score(self) -> float:
        """Mean log probability of the links (``-inf`` when there are none)."""
        if not self.links:
            return -math.inf
        return float(np.mean(np.log(np.maximum(self.probs, 1e-12))))


def pick(pair: PairAlignment, requested: str | None) -> str:
    """The distribution to take links from: ``requested``, else the posterior where there is one, else
    the model's only one. A soft model's ``attention`` serves for ``prior`` and ``posterior``."""
    names = list(pair.matrices)
    if requested is None:
        return "posterior" if "posterior" in names else names[0]
    if requested in names:
        return requested
    if names == ["attention"]:
        return "attention"
    raise UserError(f"distribution {requested!r}: the model gives only {', '.join(names)} — choose one of them")


def _prior(pair: PairAlignment) -> float:
    return pair.entropy.get("prior", pair.entropy.get("attention", float("nan")))


def one_direction(pairs: Sequence[PairAlignment], name: str | None = None, method: str = "argmax",
                  threshold: float = 0.0) -> list[WordAlignment]:
    """Word links of each pair from one run's matrices."""
    out = []
    for pair in pairs:
        matrix = word_matrix(pair, pick(pair, name))
        links = sorted(extract(matrix, method, threshold))
        out.append(WordAlignment(pair.index, src_words(pair), tgt_words(pair), links,
                                 [float(matrix[i, j]) for i, j in links], [_prior(pair)]))
    return out


def directions(forward: PairAlignment, reverse: PairAlignment, name: str | None = None,
               reverse_name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The two word matrices of one pair, both ``[S, T]`` over the forward pair's words; a UserError when
    the runs did not align the same words."""
    fw = word_matrix(forward, pick(forward, name))
    rv = word_matrix(reverse, pick(reverse, reverse_name)).T
    if fw.shape != rv.shape:
        raise UserError(f"pair {forward.index + 1}: the forward run sees {fw.shape[0]} source and {fw.shape[1]} "
                        f"target words but the reverse run {rv.shape[0]} and {rv.shape[1]} — align the same "
                        "pairs, tokenised the same way, with both runs")
    return fw, rv


def two_directions(forward: Sequence[PairAlignment], reverse: Sequence[PairAlignment], heuristic: str, *,
                   name: str | None = None, reverse_name: str | None = None, method: str = "argmax",
                   threshold: float = 0.0, soft_threshold: float = 0.25) -> list[WordAlignment]:
    """Symmetrised word links of each pair: ``heuristic`` is one of
    :data:`varattn.analysis.symmetrize.HEURISTICS`; ``reverse[k]`` aligns ``forward[k]``'s pair the other
    way (its source is the forward target)."""
    if len(forward) != len(reverse):
        raise UserError(f"{len(forward)} pairs aligned forward but {len(reverse)} in reverse — align the same pairs")
    out = []
    for fp, rp in zip(forward, reverse):
        fw, rv = directions(fp, rp, name, reverse_name)
        if heuristic in symmetrize.SOFT:
            combined = symmetrize.combine(fw, rv, heuristic)
            links = symmetrize.soft_links(combined, soft_threshold)
        else:
            combined = (fw + rv) / 2.0
            links = symmetrize.symmetrize(extract(fw, method, threshold),
                                          symmetrize.transpose(extract(rv.T, method, threshold)),
                                          heuristic, *fw.shape)
        links = sorted(links)
        out.append(WordAlignment(fp.index, src_words(fp), tgt_words(fp), links,
                                 [float(combined[i, j]) for i, j in links], [_prior(fp), _prior(rp)]))
    return out


# ----------------------------------------------------------------------------- files


def write(alignments: Sequence[WordAlignment], links_path: Path, *, probs_path: str | Path | None = None,
          words_path: str | Path | None = None, scores_path: str | Path | None = None,
          separator: str = "<sep>") -> list[Path]:
    """Pharaoh links (0-based, over the words), and where asked: one probability per link in the same
    order (awesome-align's ``--output_prob_file``), ``src<sep>tgt`` word pairs, and per-sentence scores
    (tab-separated: pair, links, mean log probability, prior entropy per direction). Returns the paths."""
    written = []

    def put(path, lines):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        written.append(path)

    put(links_path, (" ".join(f"{i}-{j}" for i, j in a.links) for a in alignments))
    if probs_path:
        put(probs_path, (" ".join(f"{p:.4f}" for p in a.probs) for a in alignments))
    if words_path:
        put(words_path, (" ".join(f"{a.src[i]}{separator}{a.tgt[j]}" for i, j in a.links) for a in alignments))
    if scores_path:
        columns = max((len(a.entropy) for a in alignments), default=1)
        head = ["pair", "links", "mean_log_prob"] + (["prior_entropy"] if columns == 1 else
                                                      ["prior_entropy_forward", "prior_entropy_reverse"])
        put(scores_path, ["\t".join(head)] + ["\t".join([str(a.index), str(len(a.links)), f"{a.score:.4f}"]
                                                        + [f"{e:.4f}" for e in a.entropy]) for a in alignments])
    return written


def tokens_lines(alignments: Sequence[WordAlignment]) -> list[str]:
    """The words each link file indexes, as ``source ||| target`` lines."""
    return [f"{' '.join(a.src)} ||| {' '.join(a.tgt)}" for a in alignments]


def score(alignments: Sequence[WordAlignment], golds: Sequence[aer.GoldLinks]) -> aer.Counts:
    return aer.score([a.links for a in alignments], golds)
