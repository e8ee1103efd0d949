"""Use a trained translation model from Python: raw text in, raw text (and alignments) out.

>>> import varattn
>>> model = varattn.load("runs/m30k-vae")                 # a run directory, an export, or a Hub id
>>> best = model.translate(["ein hund läuft ."], beam=5)[0]
>>> best.text, best.score, best.prior.shape               # prior [|y| + 1, |x|], rows: y tokens + </s>

Every method takes raw sentences and runs them through the run's own pipeline (Moses tokenisation,
lowercasing, BPE, as the training data was prepared; ``pretokenized=True`` skips the tokeniser for text
that is already tokenised and escaped like the training data), batches them by tokens, and gives plain
Python/NumPy results; no training object is exposed. Token lists are the model's (BPE pieces); positions
``i`` (source) and ``j`` (target) count from 0.

- :meth:`Model.translate`: beam search -> :class:`Translation` per sentence (text, tokens, search score,
  log p(y|x), the prior's matrix over the output and its argmax links; ``nbest`` alternatives).
- :meth:`Model.align`: teacher-forced on given translations -> :class:`Alignment` per pair (prior,
  posterior of a ``vae-*`` model, or a ``soft`` model's attention; piece and word links with their
  probabilities), the numbers ``varattn align`` writes.
- :meth:`Model.score`: -> :class:`Score` per pair: log p(y|x) (the exact marginal under the prior for
  latent modes, the expected-context likelihood for ``soft``; ``</s>`` included), token count, perplexity.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from varattn.errors import UserError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class Translation:
    """One output sentence.

    source_tokens [S], tokens [T] (BPE pieces); text: BPE removed (Moses-detokenised when asked); score:
    the search's ranking score (see :mod:`varattn.decoding.search`); log_prob: log p(y|x) under the model's
    next-word distribution, ``</s>`` included; prior: float64 [T + 1, S], row j the prior over source
    pieces as the model chose output token j (last row: as it chose ``</s>``); links: (i, j) pairs, the
    prior's argmax source piece of each output piece; nbest: with ``n_best`` > 1, the alternatives best
    first (this one included).
    """

    source_tokens: list[str]
    tokens: list[str]
    text: str
    score: float
    log_prob: float
    prior: np.ndarray
    links: list[tuple[int, int]]
    nbest: list["Translation"] = field(default_factory=list)


@dataclass
class Alignment:
    """One teacher-forced sentence pair.

    source_tokens [S]; target_tokens [T + 1] (the reference's pieces, then ``</s>``); matrices: name ->
    float64 [T + 1, S] with rows summing to 1 (``prior`` and ``posterior``, or ``attention`` for a soft
    model); entropy: name -> mean entropy in nats; links: name -> (i, j, p), the argmax source piece i of
    each target piece j (``</s>`` left out) and its probability; word_links: name -> (i, j, p) over
    words: each target word j's most probable source word i in the word matrix W (pieces' probabilities
    summed over the source word, averaged over the target word) and p = W[i, j] — what ``varattn align``
    writes to ``{name}.words.align`` and scores.
    """

    source_tokens: list[str]
    target_tokens: list[str]
    matrices: dict[str, np.ndarray]
    entropy: dict[str, float]
    links: dict[str, list[tuple[int, int, float]]]
    word_links: dict[str, list[tuple[int, int, float]]]


@dataclass
class Score:
    """log_prob: log p(y|x) of the whole target, ``</s>`` included; tokens: target tokens scored (pieces
    + ``</s>``); ppl: exp(-log_prob / tokens)."""

    log_prob: float
    tokens: int
    ppl: float


def _resolve(path_or_hub_id: str | os.PathLike) -> Path:
    """A local path as it is; a Hub id ``user/name`` that is not a local path is downloaded (optional
    ``huggingface_hub``) and its local folder returned."""
    path = Path(path_or_hub_id)
    if path.exists() or not _HUB_ID.match(str(path_or_hub_id)):
        return path
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise UserError(f"{path_or_hub_id}: no such run or export here; to download it from the Hugging Face "
                        "Hub, pip install huggingface_hub") from None
    try:
        return Path(snapshot_download(repo_id=str(path_or_hub_id)))
    except Exception as error:  # the Hub client raises many kinds (network, not found, auth)
        raise UserError(f"{path_or_hub_id}: not found locally and the Hub download failed "
                        f"({type(error).__name__}: {error})") from None


def load(path_or_hub_id: str | os.PathLike, device: str | torch.device | None = None) -> "Model":
    """Open a trained model: a run directory (its best checkpoint), a checkpoint ``.json``, a folder
    written by ``varattn export``, or — when ``huggingface_hub`` is installed — the Hub id of such a
    folder (``"user/name"``). ``device``: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` … (default: CUDA when
    present, else CPU). It opens through the one loader every command uses
    (:func:`varattn.training.runs.load_run`); a model that does not map sequences to sequences (a VQA
    run) is refused."""
    from varattn.device import resolve_device
    from varattn.training.runs import load_run

    device = resolve_device("auto" if device is None else str(device))
    path = _resolve(path_or_hub_id)
    run = load_run(path, device)
    if not run.task.aligns_sequences:
        raise UserError(f"{path}: a {run.task.name} model — varattn.load opens translation models")
    return Model(run, str(path))


def _sentences(value, name: str) -> tuple[list[str], bool]:
    """``value`` as a list of strings, and whether a single string was given."""
    if isinstance(value, str):
        return [value], True
    try:
        items = list(value)
    except TypeError:
        raise UserError(f"{name}: give a string or a list of strings, not {type(value).__name__}") from None
    for n, item in enumerate(items):
        if not isinstance(item, str):
            raise UserError(f"{name}[{n}]: give strings, not {type(item).__name__}")
    return items, False


def _piece_links(matrix: np.ndarray, rows: int) -> list[tuple[int, int, float]]:
    """(i, j, p): the argmax column i of each of the first ``rows`` rows j, and its probability."""
    best = matrix[:rows].argmax(-1) if rows else np.zeros(0, dtype=int)
    return [(int(i), j, float(matrix[j, i])) for j, i in enumerate(best)]


def _word_links(pair, name: str) -> list[tuple[int, int, float]]:
    """(i, j, W[i, j]): each target word's forward word link (the argmax of its column of the word matrix,
    :meth:`varattn.analysis.align.PairAlignment.word_links`), by target word."""
    matrix = pair.word_matrix(name)
    return [(i, j, float(matrix[i, j])) for i, j in sorted(pair.word_links(name), key=lambda link: (link[1], link[0]))]


def _prior(matrices: dict[str, np.ndarray]) -> np.ndarray:
    """The distribution decoding follows: the prior of a latent model, the attention of a soft one."""
    for name in ("prior", "attention"):
        if name in matrices:
            return matrices[name]
    return next(iter(matrices.values()))


class Model:
    """A trained translation model with its vocabularies and preprocessing; see the module docstring.

    Attributes: ``mode`` (e.g. ``"vae-enum"``), ``source_language``, ``target_language``,
    ``has_posterior``, ``device``, ``decode`` (the run's decoding defaults, a dict), ``path``, ``config``
    (the run's whole :class:`varattn.config.Config`).
    """

    def __init__(self, run, path: str):
        self._run = run
        self.path = path
        self.mode: str = run.config.model.mode
        pipeline = run.data.pipeline
        self.source_language: str = pipeline.src_lang
        self.target_language: str = pipeline.tgt_lang
        self.has_posterior: bool = bool(run.model.has_posterior)
        self.device: torch.device = run.device
        self.decode: dict = dict(vars(run.config.decode))
        self.config = run.config

    def __repr__(self) -> str:
        return (f"varattn.Model({self.path!r}, mode={self.mode!r}, {self.source_language}->{self.target_language}, "
                f"device={self.device})")

    # --- preprocessing ----------------------------------------------------------------------------

    def _encode(self, lines: list[str], side: str, pretokenized: bool) -> list[list[str]]:
        from varattn.decoding.translate import encode_sources

        pipeline = self._run.data.pipeline
        if side == "src":
            return encode_sources(pipeline, lines, pretokenized=pretokenized)
        return [pipeline.encode_pretokenized(line) if pretokenized else pipeline.encode_target(line) for line in lines]

    def _pairs(self, sources, targets, pretokenized: bool):
        src_lines, single = _sentences(sources, "sources")
        tgt_lines, _ = _sentences(targets, "targets")
        if len(src_lines) != len(tgt_lines):
            raise UserError(f"sources and targets: {len(src_lines)} and {len(tgt_lines)} sentences — give one "
                            "target per source")
        src = self._encode(src_lines, "src", pretokenized)
        tgt = self._encode(tgt_lines, "tgt", pretokenized)
        for n, (s, t) in enumerate(zip(src, tgt)):
            if not s or not t:
                raise UserError(f"pair {n}: empty source or target — give a sentence on both sides")
        return src, tgt, single

    def _alignments(self, src: list[list[str]], tgt: list[list[str]]) -> list:
        from varattn.analysis.align import extract

        run = self._run
        return extract(run, [run.data.src_vocab.encode(s) for s in src], [run.data.tgt_vocab.encode(t) for t in tgt],
                       src, tgt)

    # --- the three uses ---------------------------------------------------------------------------

    @torch.no_grad()
    def translate(self, sentences: str | Sequence[str], beam: int = 5, n_best: int = 1, kmax: int | None = None,
                  pretokenized: bool = False, *, alpha: float | None = None, eos_norm: float | None = None,
                  detokenize: bool = False, ensemble: Sequence["Model"] = ()) -> list[Translation] | Translation:
        """Beam-search translations of raw sentences, one :class:`Translation` each (or one for a single
        string). ``beam`` 1 is greedy search; ``n_best`` (≤ beam) alternatives go to ``nbest``; ``kmax``:
        latent modes decode with the K most probable positions (0: the exact marginal; default: the
        run's setting); ``alpha``, ``eos_norm``: length normalisation and ``</s>`` penalty (default: the
        run's); ``detokenize``: Moses-detokenise the text. An empty sentence gives an empty translation.
        ``ensemble``: other models trained on the same prepared data to decode with this one, by the mean of
        the models' next-word probabilities (:mod:`varattn.decoding.ensemble`); ``links`` are then the
        argmax of their mean prior and ``score`` and ``log_prob`` the ensemble's, while the ``prior``
        matrix stays this model's own."""
        from varattn.decoding.translate import translate_lines

        lines, single = _sentences(sentences, "sentences")
        run = self._run
        decode = copy.copy(run.config.decode)
        decode.beam = int(beam)
        for name, value in (("kmax", kmax), ("alpha", alpha), ("eos_norm", eos_norm)):
            if value is not None:
                setattr(decode, name, value)
        if decode.beam < 1 or decode.kmax < 0:
            raise UserError(f"beam={decode.beam}, kmax={decode.kmax}: beam must be at least 1 and kmax at least 0")
        if not 1 <= n_best <= decode.beam:
            raise UserError(f"n_best={n_best}: must lie between 1 and beam={decode.beam}")
        decoder = self._ensemble(ensemble) if ensemble else run
        found = translate_lines(decoder, lines, decode, detokenize=detokenize, n_best=n_best,
                                pretokenized=pretokenized)
        flat = [(n, hypothesis, text) for n, item in enumerate(found) for hypothesis, text in item.nbest]
        vocab = run.data.tgt_vocab
        want = [(n, h, t) for n, h, t in flat if found[n].source_tokens and h.tokens]
        matrices = self._alignments([found[n].source_tokens for n, _, _ in want], [vocab.decode(h.tokens) for _, h, _ in want])
        prior_of = {id(h): _prior(pair.matrices) for (_, h, _), pair in zip(want, matrices)}
        results: list[list[Translation]] = [[] for _ in found]
        for n, hypothesis, text in flat:
            source = found[n].source_tokens
            prior = prior_of.get(id(hypothesis), np.zeros((0, len(source))))
            results[n].append(Translation(
                source_tokens=list(source), tokens=vocab.decode(hypothesis.tokens), text=text,
                score=float(hypothesis.score), log_prob=float(hypothesis.log_prob), prior=prior,
                links=[(int(i), j) for j, i in enumerate(hypothesis.alignment)]))
        out = []
        for alternatives in results:
            best = copy.copy(alternatives[0])
            best.nbest = alternatives if n_best > 1 else []
            out.append(best)
        return out[0] if single else out

    def _ensemble(self, others: Sequence["Model"]):
        """This model's run with its model replaced by the ensemble of it and ``others``."""
        import dataclasses

        from varattn.decoding.ensemble import Ensemble, check_same_vocabularies

        for n, other in enumerate(others):
            if not isinstance(other, Model):
                raise UserError(f"ensemble[{n}]: give models opened with varattn.load, not {type(other).__name__}")
            if other.device != self.device:
                raise UserError(f"ensemble[{n}]: on {other.device}, this model on {self.device} — load them on "
                                "one device")
        check_same_vocabularies(self._run, [other._run for other in others], [other.path for other in others])
        return dataclasses.replace(self._run, model=Ensemble([self._run.model, *(o._run.model for o in others)]))

    @torch.no_grad()
    def align(self, sources: str | Sequence[str], targets: str | Sequence[str], pretokenized: bool = False
              ) -> list[Alignment] | Alignment:
        """Teacher-forced alignments of raw sentence pairs (one :class:`Alignment` each, or one for a
        single pair of strings): the prior p(z_j | x, y<j), the posterior q(z_j | x, y) of a ``vae-*``
        model, or a ``soft`` model's attention."""
        src, tgt, single = self._pairs(sources, targets, pretokenized)
        out = []
        for pair in self._alignments(src, tgt):
            rows = len(pair.tgt) - 1
            links = {name: _piece_links(matrix, rows) for name, matrix in pair.matrices.items()}
            out.append(Alignment(
                source_tokens=pair.src, target_tokens=pair.tgt, matrices=pair.matrices, entropy=pair.entropy,
                links=links, word_links={name: _word_links(pair, name) for name in links}))
        return out[0] if single else out

    @torch.no_grad()
    def score(self, sources: str | Sequence[str], targets: str | Sequence[str], pretokenized: bool = False
              ) -> list[Score] | Score:
        """log p(y | x) of raw sentence pairs, one :class:`Score` each (or one for a single pair): the exact
        marginal ``Σ_j log Σ_i p(z_j = i) p(y_j | z_j = i)`` under the prior for latent modes (a Monte-Carlo
        estimate for ``vae-dirichlet``), the expected-context likelihood for ``soft``."""
        from varattn.data.text.batching import IdPairs, TokenBatcher, collate
        from varattn.latent import evaluation_terms, get_mode
        from varattn.tasks.translation_scores import perplexity

        src, tgt, single = self._pairs(sources, targets, pretokenized)
        run = self._run
        model, mode = run.model, get_mode(run.config.model.mode)
        src_ids = [run.data.src_vocab.encode(s) for s in src]
        tgt_ids = [run.data.tgt_vocab.encode(t) for t in tgt]
        pairs = IdPairs(src_ids, tgt_ids)
        batcher = TokenBatcher([len(s) for s in src_ids], [len(t) for t in tgt_ids],
                               run.config.data.eval_max_tokens, shuffle=False)
        generator = torch.Generator(device=run.device)
        generator.manual_seed(run.config.train.seed)
        log_probs = [0.0] * len(src_ids)
        for rows in batcher.batches(0):
            batch = collate(pairs, rows).to(run.device)
            out = model(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, batch.tgt_lengths)
            nll = evaluation_terms(mode, out.likelihood, out.prior, out.posterior, out.mask,
                                   samples=run.config.train.eval_samples, generator=generator)["nll"]
            sums = nll.double().masked_fill(~out.query_weights, 0.0).sum(-1).cpu()
            for row, i in enumerate(rows.tolist()):
                log_probs[i] = -float(sums[row])
        scores = []
        for log_prob, ids in zip(log_probs, tgt_ids):
            tokens = len(ids) + 1
            scores.append(Score(log_prob, tokens, perplexity(-log_prob / tokens)))
        return scores[0] if single else scores
