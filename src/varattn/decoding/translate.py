"""Translate raw text lines with a trained run: preprocess, batch by tokens, decode, postprocess."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterable, Iterator, Protocol

import torch

from varattn.config import DecodeConfig
from varattn.data.vocab import PAD
from varattn.decoding.search import Hypothesis, beam_search
from varattn.errors import UserError

log = logging.getLogger(__name__)


class LoadedRun(Protocol):
    """What decoding reads of an opened run (:class:`varattn.training.runs.LoadedRun` is one): the model,
    its device and, to translate raw text, its prepared data (pipeline and vocabularies)."""

    model: torch.nn.Module
    device: torch.device
    data: Any


_ESCAPED = re.compile(r"&(apos|quot|amp|lt|gt|#91|#93|#124);")


@dataclass
class Translation:
    source_tokens: list[str]
    hypothesis: Hypothesis
    text: str  # BPE removed (and detokenised when asked)
    nbest: list[tuple[Hypothesis, str]] = field(default_factory=list)  # best first, the best included


CHUNK = 256  # consecutive inputs sorted into batches together (see decode_nbest)


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
    hypothesis. When SIGINT or SIGTERM asks to stop (:mod:`varattn.stopping`), the batch in progress is
    finished and only the sequences complete from the first one on are returned (a shorter list)."""
    from varattn import stopping

    results: list[list[Hypothesis] | None] = [None] * len(ids)
    lengths = [max(1, len(x)) for x in ids]
    # sorted by length within chunks of the input: what a signal leaves undone is at most one chunk
    batches = [[start + i for i in batch] for start in range(0, len(ids), CHUNK)
               for batch in token_batches(lengths[start:start + CHUNK], decode.batch_tokens)]
    for batch in batches:  # refuse what cannot fit before decoding anything
        nonempty = [len(ids[i]) for i in batch if len(ids[i])]
        if nonempty:
            _check_beams(len(nonempty) * decode.beam, max(nonempty), run.model.output.generator.out_features,
                         run.device)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(ids), desc="decoding", unit="sent", leave=False)
    for batch in batches:
        for i in batch:
            if not len(ids[i]):
                results[i] = [Hypothesis([], 0.0, [])]
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
        if stopping.requested():
            break
    if bar is not None:
        bar.close()
    complete = next((i for i, found in enumerate(results) if found is None), len(results))
    return results[:complete]  # type: ignore[return-value]


def _check_beams(rows: int, width: int, vocab: int, device: torch.device) -> None:
    """Refuse a decoding batch whose per-step tensors cannot fit: the next-word scores of every beam
    row ``[B * beam, V]`` and its source positions ``[B * beam, S]``, float32, with one working copy."""
    from varattn import memory

    memory.check_fits(rows * (vocab + width) * memory.FLOAT_BYTES * 2, device,
                      f"decoding {rows:,} beam rows over {width:,} source tokens and {vocab:,} target words",
                      "lower --beam (or decode.beam) or --batch-tokens, or split the longest input lines")


def decode_ids(run: LoadedRun, ids: list[list[int]], decode: DecodeConfig, *, progress: bool = False
               ) -> list[Hypothesis]:
    """The best hypothesis of :func:`decode_nbest` for each source id sequence, in order."""
    return [found[0] for found in decode_nbest(run, ids, decode, progress=progress)]


def encode_sources(pipeline, lines: Iterable[str], *, pretokenized: bool = False, name: str = "input",
                   start: int = 1) -> list[list[str]]:
    """Raw source lines -> model tokens with the run's pipeline (an empty line gives no tokens).

    ``pretokenized``: the lines are already tokenised (and escaped) as the training data was, so only
    lowercasing (where the pipeline lowercases) and BPE are applied. Without it, a line that looks
    already Moses-escaped (``&apos;``, ``&quot;`` ...) is logged as a warning, since tokenising it again
    escapes the ``&`` once more and the tokens no longer match the training data's. A line with
    characters that are all invisible format characters (zero-width spaces, byte-order marks: see
    :func:`~varattn.data.text.tokenize.normalize`) is refused, naming ``name`` and its line number
    (``start`` for the first line).
    """
    from varattn.data.text.tokenize import normalize

    lines = list(lines)
    if not pretokenized and pipeline.tokenize and pipeline.escape:
        escaped = sum(1 for line in lines if _ESCAPED.search(line))
        if escaped:
            log.warning("%d of %d input lines look already tokenised and escaped (e.g. &apos;); if the input "
                        "is tokenised like the training data, pass pretokenized=True", escaped, len(lines))
    out = []
    for number, line in enumerate(lines, start):
        if not line.strip():
            out.append([])
        elif not normalize(line)[0].strip():
            codes = " ".join(sorted({f"U+{ord(ch):04X}" for ch in line if not ch.isspace()}))
            raise UserError(f"{name}:{number}: only invisible format characters ({codes}), nothing to translate "
                            "— remove the line or give text")
        elif pretokenized:
            out.append(pipeline.encode_pretokenized(line))
        else:
            out.append(pipeline.encode_source(line))
    return out


def translate_lines(run: LoadedRun, lines: Iterable[str], decode: DecodeConfig, *, detokenize: bool = False,
                    progress: bool = False, n_best: int = 1, pretokenized: bool = False, name: str = "input",
                    start: int = 1) -> list[Translation]:
    """One :class:`Translation` per raw input line, in input order (an empty line gives an empty output);
    with ``n_best`` > 1 each also lists its ``n_best`` hypotheses in ``nbest``. ``pretokenized``: see
    :func:`encode_sources`. Stopped by a signal (see :func:`decode_nbest`), only the lines complete from
    the first one on are returned."""
    pipeline, tgt_vocab = run.data.pipeline, run.data.tgt_vocab
    sources = encode_sources(pipeline, lines, pretokenized=pretokenized, name=name, start=start)
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
                 alignments: bool = False, start: int = 0) -> Iterable[str]:
    """The lines `varattn translate` writes. With ``n_best`` = 1: one line per input, ``text``, then
    `` ||| score`` with ``scores`` and `` ||| links`` with ``alignments``. With ``n_best`` > 1, Moses'
    n-best format: per input (numbered from 0) up to ``n_best`` lines ``i ||| text ||| score``, best first,
    plus `` ||| links`` with ``alignments`` (an empty input gives one empty entry). The score is the search
    score: (log p(y|x) - </s> penalty) / ((5 + |y|) / 6)^alpha. ``start``: the number of the first input
    (when translations come in batches)."""
    for index, item in enumerate(translations, start):
        entries = item.nbest if n_best > 1 else [(item.hypothesis, item.text)]
        for hypothesis, text in entries:
            fields = [str(index), text] if n_best > 1 else [text]
            if scores or n_best > 1:
                fields.append(f"{hypothesis.score:.6f}")
            if alignments:
                fields.append(pharaoh(hypothesis.alignment))
            yield " ||| ".join(fields)


def line_batches(stream: BinaryIO, buffer: int, name: str = "<stdin>") -> Iterator[list[str]]:
    """Lines of a binary stream in batches of at most ``buffer``, each batch as soon as it is available.

    Reads with ``read1`` (one read of whatever the pipe, terminal or file holds, blocking only while it
    holds nothing), so a line typed at a terminal or written into a pipe that stays open is yielded at
    once, while a file or a fast pipe still gives full batches. Lines are UTF-8 (a leading BOM is
    dropped; ``\r\n`` endings accepted); invalid UTF-8 raises :class:`UserError` naming ``name`` and
    the 1-based line number, after the lines before it have been yielded.
    """
    if buffer < 1:
        raise UserError(f"buffer {buffer}: must be at least 1 line")
    read = getattr(stream, "read1", stream.read)
    pending, number, ready = b"", 0, []

    def decode(raw: bytes) -> str:
        nonlocal number
        number += 1
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise UserError(f"{name}:{number}: invalid UTF-8 (byte 0x{raw[e.start]:02x}) — convert the input "
                            "to UTF-8, e.g. with iconv") from None
        if number == 1 and text.startswith("\ufeff"):
            text = text[1:]
        return text[:-1] if text.endswith("\r") else text

    error = None
    while error is None:
        chunk = read(1 << 16)
        if not chunk:
            if pending:
                complete, pending = [pending], b""
            else:
                break
        else:
            *complete, pending = (pending + chunk).split(b"\n")
        try:
            for raw in complete:
                ready.append(decode(raw))
        except UserError as bad:  # the lines before it are still answered
            error = bad
        while ready:  # everything complete is translated now: nothing waits for lines not yet written
            batch, ready = ready[:buffer], ready[buffer:]
            yield batch
    if error is not None:
        raise error
