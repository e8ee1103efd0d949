"""Translate raw text lines with a trained run: preprocess, batch by tokens, decode, postprocess."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch

from .config import DecodeConfig
from .data.vocab import PAD
from .runs import LoadedRun
from .search import Hypothesis, greedy


@dataclass
class Translation:
    source_tokens: list[str]
    hypothesis: Hypothesis
    text: str  # BPE removed (and detokenised when asked)


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


def decode_ids(run: LoadedRun, ids: list[list[int]], decode: DecodeConfig, *, progress: bool = False
               ) -> list[Hypothesis]:
    """Decode source id sequences (no BOS/EOS), batched by tokens; one hypothesis each, in order."""
    results: list[Hypothesis] = [Hypothesis([], 0.0, [])] * len(ids)
    batches = token_batches([max(1, len(x)) for x in ids], decode.batch_tokens)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc="decoding", unit="batch", leave=False)
    for batch in batches:
        nonempty = [i for i in batch if len(ids[i])]
        if not nonempty:
            continue
        width = max(len(ids[i]) for i in nonempty)
        src = torch.full((len(nonempty), width), PAD, dtype=torch.long)
        for row, i in enumerate(nonempty):
            src[row, : len(ids[i])] = torch.as_tensor(ids[i])
        lengths = torch.tensor([len(ids[i]) for i in nonempty])
        hypotheses = greedy(run.model, src.to(run.device), lengths.to(run.device),
                            max_len_a=decode.max_len_a, max_len_b=decode.max_len_b, kmax=decode.kmax)
        for i, hypothesis in zip(nonempty, hypotheses):
            results[i] = hypothesis
    return results


def translate_lines(run: LoadedRun, lines: Iterable[str], decode: DecodeConfig, *, detokenize: bool = False,
                    progress: bool = False) -> list[Translation]:
    """One :class:`Translation` per raw input line, in input order (an empty line gives an empty output)."""
    pipeline, tgt_vocab = run.data.pipeline, run.data.tgt_vocab
    sources = [pipeline.encode_source(line) if line.strip() else [] for line in lines]
    hypotheses = decode_ids(run, [run.data.src_vocab.encode(tokens) for tokens in sources], decode,
                            progress=progress)
    return [Translation(tokens, hypothesis,
                        pipeline.decode_target(tgt_vocab.decode(hypothesis.tokens), detokenize=detokenize))
            for tokens, hypothesis in zip(sources, hypotheses)]
