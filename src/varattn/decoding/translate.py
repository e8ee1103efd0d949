"""Translate raw text lines with a trained run: preprocess, batch by tokens, decode, postprocess."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import torch

from varattn.config import DecodeConfig
from varattn.data.vocab import PAD
from varattn.training.runs import LoadedRun
from varattn.decoding.search import Hypothesis, beam_search


@dataclass
class Translation:
    source_tokens: list[str]
    hypothesis: Hypothesis
    text: str  # BPE removed (and detokenised when asked)
    nbest: list[tuple[Hypothesis, str]] = field(default_factory=list)  # best first, the best included


def token_batches(lengths: list[int], batch_tokens: int) -> list[list[int]]:
    """Indices grouped by length so that rows x longest row <= batch_tokens (at least one row)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches, current, longest = [], [], 0
    for index in order:
        longest_if_added = max(longest, lengths[index])
        if current and longest_if_added * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current, longest_if_added = [], lengths[index]
        current.append(index)
        longest = longest_if_added
    if current:
        batches.append(current)
    return batches


def decode_nbest(run: LoadedRun, ids: list[list[int]], decode: DecodeConfig, *, n_best: int = 1,
                 progress: bool = False) -> list[list[Hypothesis]]:
    """Beam-search source id sequences (no BOS/EOS) with the settings of ``decode``, batched by tokens
    (``decode.batch_tokens`` padded source tokens per batch, before the beam multiplies the rows); per
    sequence its ``n_best`` hypotheses, best first, in input order. An empty source gets one empty
    hypothesis."""
    results: list[list[Hypothesis]] = [[Hypothesis([], 0.0, [])] for _ in ids]
    batches = token_batches([max(1, len(x)) for x in ids], decode.batch_tokens)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(ids), desc="decoding", unit="sent", leave=False)
    for batch in batches:
        nonempty = [i for i in batch if len(ids[i])]
        if nonempty:
            width = max(len(ids[i]) for i in nonempty)
            src = torch.full((len(nonempty), width), PAD, dtype=torch.long)
            for row, i in enumerate(nonempty):
                src[row, : len(ids[i])] = torch.as_tensor(ids[i])
            lengths = torch.tensor([len(ids[i]) for i in nonempty])
            found = beam_search(run.model, src.to(run.device), lengths.to(run.device), beam=decode.beam,
                                alpha=decode.alpha, eos_norm=decode.eos_norm, max_len_a=decode.max_len_a,
                                max_len_b=decode.max_len_b, kmax=decode.kmax, n_best=n_best)
            for i, hypotheses in zip(nonempty, found):
                results[i] = hypotheses
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    return results


def decode_ids(run: LoadedRun, ids: list[list[int]], decode: DecodeConfig, *, progress: bool = False
               ) -> list[Hypothesis]:
    """The best hypothesis of :func:`decode_nbest` for each source id sequence, in order."""
    return [found[0] for found in decode_nbest(run, ids, decode, progress=progress)]


def translate_lines(run: LoadedRun, lines: Iterable[str], decode: DecodeConfig, *, detokenize: bool = False,
                    progress: bool = False, n_best: int = 1) -> list[Translation]:
    """One :class:`Translation` per raw input line, in input order (an empty line gives an empty output);
    with ``n_best`` > 1 each also lists its ``n_best`` hypotheses in ``nbest``."""
    pipeline, tgt_vocab = run.data.pipeline, run.data.tgt_vocab
    sources = [pipeline.encode_source(line) if line.strip() else [] for line in lines]
    found = decode_nbest(run, [run.data.src_vocab.encode(tokens) for tokens in sources], decode, n_best=n_best,
                         progress=progress)

    def text(hypothesis: Hypothesis) -> str:
        return pipeline.decode_target(tgt_vocab.decode(hypothesis.tokens), detokenize=detokenize)

    translations = []
    for tokens, hypotheses in zip(sources, found):
        nbest = [(hypothesis, text(hypothesis)) for hypothesis in hypotheses]
        translations.append(Translation(tokens, nbest[0][0], nbest[0][1], nbest))
    return translations


def pharaoh(alignment: list[int]) -> str:
    """Prior argmax links as Pharaoh ``i-j`` pairs: source position i, target position j (0-based, over
    model tokens, i.e. BPE pieces before BPE removal)."""
    return " ".join(f"{i}-{j}" for j, i in enumerate(alignment))


def output_lines(translations: list[Translation], *, n_best: int = 1, scores: bool = False,
                 alignments: bool = False) -> Iterable[str]:
    """The lines `varattn translate` writes. With ``n_best`` = 1: one line per input, ``text``, then
    `` ||| score`` with ``scores`` and `` ||| links`` with ``alignments``. With ``n_best`` > 1, Moses'
    n-best format: per input (numbered from 0) up to ``n_best`` lines ``i ||| text ||| score``, best first,
    plus `` ||| links`` with ``alignments`` (an empty input gives one empty entry). The score is the search
    score: (log p(y|x) - </s> penalty) / ((5 + |y|) / 6)^alpha."""
    for index, item in enumerate(translations):
        entries = item.nbest if n_best > 1 else [(item.hypothesis, item.text)]
        for hypothesis, text in entries:
            fields = [str(index), text] if n_best > 1 else [text]
            if scores or n_best > 1:
                fields.append(f"{hypothesis.score:.6f}")
            if alignments:
                fields.append(pharaoh(hypothesis.alignment))
            yield " ||| ".join(fields)
