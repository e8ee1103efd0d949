"""The body of `varattn align`: extract, export, score and draw a run's alignments, and the browsable
self-contained HTML report (:func:`write_html`: one file, images inline as base64 PNG, no script or
style from anywhere else — a Content-Security-Policy forbids every network request).

Output folder (see :mod:`varattn.analysis.align` for the exports): ``alignments.json``, ``{name}.align``,
``{name}.words.align``, ``pictures/pair-NNNNN.{png,svg}`` for the first pairs, ``grid.{png,svg}``
(several pairs on one page), ``summary.json`` (files, AER per distribution when gold links are known,
mean entropies), and the HTML report where asked. The word aligner's outputs (see
:mod:`varattn.analysis.wordlinks`): ``links.align`` (the chosen word links, one direction or symmetrised,
indexing the words of ``tokens.txt``), ``scores.tsv`` (per sentence), the probability and word-pair files
where asked, and with a reverse run its own exports in ``reverse/``.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Callable, Sequence

from varattn import stopping
from varattn.analysis import aer

from varattn.analysis import align
from varattn.analysis.align import PairAlignment
from varattn.data.text.prepared import PreparedData
from varattn.data.text.tokenize import remove_bpe
from varattn.errors import UserError
from varattn.models.protocol import CrossAttentionMaps
from varattn.training.runs import LoadedRun

HTML_LIMIT = 100  # pairs drawn in the HTML report by default (1-2 s each)


def read_inputs(run: LoadedRun, *, pairs: str | None = None, src: str | None = None, tgt: str | None = None,
                pretokenized: bool = False, limit: int | None = None) -> tuple[list[list[str]], list[list[str]]]:
    """The words of every pair of a ``source ||| target`` file or of two parallel files: split on spaces
    when ``pretokenized``, else tokenised with the run's pipeline (then shown without Moses escapes)."""
    from varattn.data.text.tokenize import moses_unescape
    from varattn.data.textio import read_parallel

    if pairs:
        from varattn.data.text.pairs import read_pairs

        src_lines, tgt_lines = read_pairs(pairs)
    elif src and tgt:
        src_lines, tgt_lines = read_parallel(src, tgt)
    else:
        raise UserError("give a prepared split (data), a pairs file, or both a source and a target file")
    src_lines, tgt_lines = src_lines[:limit], tgt_lines[:limit]
    if pretokenized:
        return [line.split() for line in src_lines], [line.split() for line in tgt_lines]
    pipeline = run.data.pipeline
    tokenised = []
    for side, lines in (("src", src_lines), ("tgt", tgt_lines)):
        tokenised.append([[moses_unescape(w) for w in pipeline.pretokenize(line, side).split()] for line in lines])
    return tokenised[0], tokenised[1]


def run_align(run: LoadedRun, out: str | Path, *, data: PreparedData | None = None, split: str = "test",
              src: str | None = None, tgt: str | None = None, pairs_file: str | None = None,
              pretokenized: bool = False, reverse_run: LoadedRun | None = None, symmetrize: str | None = None,
              distribution: str | None = None, links: str = "argmax", soft_threshold: float = 0.25,
              output_probs: str | None = None, output_words: str | None = None, separator: str = "<sep>",
              gold: str | None = None, one_based: bool = False,
              limit: int | None = None, threshold: float = 0.0, pictures: int = 10,
              formats: Sequence[str] = ("png", "svg"), grid: int = 6, html_path: str | None = None,
              html_limit: int | None = HTML_LIMIT, translate: bool = True, progress: bool = False,
              echo: Callable[[str], None] = lambda _: None) -> dict:
    """Everything `varattn align` does; returns (and writes to ``out/summary.json``) a summary.

    Input: a prepared split (``data``, ``split``), a ``source ||| target`` file (``pairs_file``) or two
    parallel files (``src``, ``tgt``), raw or ``pretokenized``. With ``reverse_run`` (a run trained the
    other way) the pairs are aligned both ways and symmetrised by ``symmetrize`` (default
    grow-diag-final-and). Word links of ``distribution`` (default: the posterior where there is one) go to
    ``out/links.align``, with ``out/scores.tsv`` per sentence and, where asked, probabilities
    (``output_probs``) and word pairs (``output_words``). The HTML report draws the first ``html_limit``
    pairs (None or 0: all; each picture takes a second or two); ``summary["html"]`` says how many.

    When SIGINT or SIGTERM asks to stop (:mod:`varattn.stopping`), the batch in progress is finished, the
    pairs complete so far are exported, and ``summary["partial"]`` says what was left out.
    """
    from varattn.analysis import pictures as drawing
    from varattn.analysis import symmetrize as sym
    from varattn.analysis import wordlinks

    for option, value in (("threshold", threshold), ("soft_threshold", soft_threshold)):
        if not 0.0 <= value <= 1.0:
            raise UserError(f"{option} {value}: give a probability between 0 and 1")
    if links not in wordlinks.METHODS:
        raise UserError(f"links {links!r}: choose one of {', '.join(wordlinks.METHODS)}")
    if symmetrize is not None and symmetrize not in sym.HEURISTICS:
        raise UserError(f"symmetrize {symmetrize!r}: choose one of {', '.join(sym.HEURISTICS)}")
    if symmetrize is not None and reverse_run is None:
        raise UserError(f"symmetrize {symmetrize}: needs a run trained the other way (reverse_run)")
    for loaded in (run, reverse_run):
        if loaded is not None and not loaded.task.aligns_sequences:
            raise UserError(f"{loaded.checkpoint}: a {loaded.task.name} model — varattn align works on "
                            "translation and transduction models")
    for loaded in (run, reverse_run) if distribution else ():
        if loaded is None or isinstance(loaded.model, CrossAttentionMaps):
            continue
        names = align.distributions(loaded.config.model.mode, loaded.model.has_posterior)
        if distribution not in names and names != ("attention",):  # fail before the slow part
            raise UserError(f"distribution {distribution!r}: {loaded.checkpoint.parent} gives only "
                            f"{', '.join(names)} — choose one of them")
    if reverse_run is not None:
        align.check_reverse(run, reverse_run)
        symmetrize = symmetrize or "grow-diag-final-and"
    out = Path(out)
    reverse_pairs = None
    if data is not None:
        pairs = align.align_split(run, data, split, limit=limit, progress=progress)
        if reverse_run is not None:
            from varattn.data.text.prepared import load_prepared

            other = load_prepared(data.path, reverse=not data.reverse)
            reverse_pairs = align.align_split(reverse_run, other, split, limit=limit, progress=progress)
        source = {"data": str(data.path), "split": split}
    else:
        src_words, tgt_words = read_inputs(run, pairs=pairs_file, src=src, tgt=tgt, pretokenized=pretokenized,
                                           limit=limit)
        if gold:  # a bad gold file stops before the slow part
            for n, (s, t, known) in enumerate(zip(src_words, tgt_words, aer.read_gold(gold, one_based=one_based)), 1):
                aer.check_bounds(known, len(s), len(t), f"{gold}:{n}")
        pairs = align.align_words(run, src_words, tgt_words, progress=progress)
        if reverse_run is not None:
            reverse_pairs = align.align_words(reverse_run, tgt_words, src_words, progress=progress)
        source = {"pairs": pairs_file} if pairs_file else {"src": src, "tgt": tgt}
        source["pretokenized"] = pretokenized
    partial = None
    signum = stopping.requested()
    if signum:
        total = len(pairs) if data is None else min(limit or len(data.split(split)), len(data.split(split)))
        kept = min(len(pairs), len(reverse_pairs)) if reverse_pairs is not None else len(pairs)
        pairs = pairs[:kept]
        reverse_pairs = reverse_pairs[:kept] if reverse_pairs is not None else None
        partial = (f"stopped by {stopping.name(signum)} after aligning {kept} of "
                   f"{total if data is not None else len(src_words)} pairs: exports cover those; no pictures, "
                   "no HTML report")
        pictures, grid, html_path = 0, 0, None
    if gold:
        golds = aer.read_gold(gold, one_based=one_based)
        align.attach_gold(pairs, golds, gold)
        if reverse_pairs is not None:
            align.attach_gold(reverse_pairs, [aer.GoldLinks(frozenset(sym.transpose(g.sure)),
                                                            frozenset(sym.transpose(g.possible))) for g in golds], gold)
    drawn = pairs[:html_limit] if html_limit else pairs
    if translate and html_path:
        echo(f"translating {len(drawn)} sources")
        align.translate(run, drawn, progress=progress)
    meta = {"checkpoint": str(run.checkpoint), "mode": run.config.model.mode, **source}
    files = align.write_exports(pairs, out, threshold=threshold, meta=meta)
    found = align.scores(pairs, threshold)
    if reverse_pairs is not None:
        chosen = wordlinks.two_directions(pairs, reverse_pairs, symmetrize, name=distribution,
                                          reverse_name=distribution, method=links, threshold=threshold,
                                          soft_threshold=soft_threshold)
        files += align.write_exports(reverse_pairs, out / "reverse", threshold=threshold,
                                     meta={"checkpoint": str(reverse_run.checkpoint),
                                           "mode": reverse_run.config.model.mode, **source})
    else:
        chosen = wordlinks.one_direction(pairs, distribution, method=links, threshold=threshold)
    files += wordlinks.write(chosen, out / "links.align", probs_path=output_probs, words_path=output_words,
                             scores_path=out / "scores.tsv", separator=separator)
    (out / "tokens.txt").write_text("".join(line + "\n" for line in wordlinks.tokens_lines(chosen)), encoding="utf-8")
    files.append(out / "tokens.txt")
    items = pairs[:pictures]
    if items or (grid and pairs):
        echo(f"drawing {len(items)} pictures{' and a grid' if grid and pairs else ''} into {out}")
    if progress and items:
        from tqdm import tqdm

        items = tqdm(items, desc="drawing", unit="picture", leave=False)
    for pair in items:
        figure = drawing.pair_figure(pair, f"pair {pair.index}")
        files += drawing.save(figure, out / "pictures" / f"pair-{pair.index:05d}", formats)
        if stopping.requested():
            break
    if grid and pairs:
        files += drawing.save(drawing.grid_figure(pairs[:grid], columns=2), out / "grid", formats)
    summary = {**meta, "pairs": len(pairs), "threshold": threshold,
               "entropy": {name: mean([p.entropy[name] for p in pairs])
                           for name in (pairs[0].matrices if pairs else [])},
               "scores": {name: counts.as_dict() for name, counts in found.items()},
               "links": {"distribution": wordlinks.pick(pairs[0], distribution) if pairs else distribution,
                         "method": links, "symmetrize": symmetrize,
                         "mean_log_prob": mean([a.score for a in chosen if a.links])}}
    if reverse_pairs is not None:
        summary["reverse"] = {"checkpoint": str(reverse_run.checkpoint),
                              "scores": {k: c.as_dict() for k, c in align.scores(reverse_pairs, threshold).items()}}
    if pairs and pairs[0].gold is not None:
        summary["links"]["score"] = wordlinks.score(chosen, [p.gold for p in pairs]).as_dict()
    if html_path:
        echo(f"drawing {len(drawn)} of {len(pairs)} pairs into {html_path}")
        shown = write_html(drawn, html_path, title=f"{Path(run.checkpoint).parent.name}: {source.get('split', src)}",
                           summary=summary, threshold=threshold, progress=progress, total=len(pairs))
        summary["html"] = {"path": str(html_path), "drawn": shown, "pairs": len(pairs)}
        files.append(Path(html_path))
    signum = stopping.requested()
    if signum and partial is None:
        partial = f"stopped by {stopping.name(signum)} while drawing: exports complete, pictures and report cut short"
    if partial:
        summary["partial"] = partial
    summary["files"] = [str(path) for path in files]
    (out / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def text(tokens: Sequence[str]) -> str:
    """Model tokens -> readable words (BPE joined, Moses escapes undone)."""
    return html.unescape(remove_bpe(" ".join(tokens)).strip())


_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:1400px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}
th{background:#f3f3f3}.pair{border-top:1px solid #bbb;padding:.6em 0}.pair h2{font-size:1.05em;margin:.2em 0}
dl{display:grid;grid-template-columns:8em 1fr;gap:.15em .8em;margin:.3em 0}dt{color:#666}dd{margin:0}
img{max-width:100%;height:auto}#filter{width:30em;padding:.3em;margin:.5em 0}.num{text-align:right}
.hidden{display:none}
"""

_SCRIPT = """
document.getElementById('filter').addEventListener('input', function () {
  var q = this.value.toLowerCase();
  document.querySelectorAll('.pair').forEach(function (s) {
    s.classList.toggle('hidden', q !== '' && s.textContent.toLowerCase().indexOf(q) < 0);
  });
});
"""


def _pair_html(pair: PairAlignment, image: str, threshold: float) -> str:
    rows = [("source", text(pair.src)), ("reference", text(pair.tgt[:-1]))]
    if pair.translation is not None:
        rows.append(("translation", html.unescape(pair.translation)))
    rows.append(("entropy", " · ".join(f"{name} {value:.3f} nats" for name, value in pair.entropy.items())))
    from varattn.analysis.pictures import near_uniform_rows

    flat = {name: int(near_uniform_rows(matrix).sum()) for name, matrix in pair.matrices.items()}
    if any(flat.values()):
        rows.append(("near-uniform", " · ".join(f"{name} {count} of {len(pair.tgt)} rows (entropy ≥ 0.9 log S)"
                                                 for name, count in flat.items() if count)))
    if pair.gold is not None:
        rows.append(("AER", " · ".join(f"{name} {aer.counts(pair.word_links(name, threshold), pair.gold).aer:.3f}"
                                         for name in pair.matrices)))
    body = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in rows)
    return (f'<section class="pair" id="pair-{pair.index}"><h2><a href="#pair-{pair.index}">pair {pair.index}</a>'
            f'</h2><dl>{body}</dl><img alt="alignment matrices of pair {pair.index}" '
            f'src="data:image/png;base64,{image}"></section>')


def write_html(pairs: Sequence[PairAlignment], path: str | Path, *, title: str, summary: dict,
               threshold: float = 0.0, progress: bool = False, total: int | None = None) -> int:
    """One self-contained HTML file: a summary table, a filter box and every pair of ``pairs`` with its
    picture (``total``: the pairs aligned, when only the first of them are drawn). Returns the number of
    pairs drawn (fewer when SIGINT or SIGTERM asked to stop)."""
    from varattn.analysis import pictures as drawing

    names = list(pairs[0].matrices) if pairs else []
    head = "".join(f"<th>{h}</th>" for h in ("distribution", "mean entropy (nats)", "AER", "precision", "recall"))
    lines = []
    for name in names:
        scored = summary.get("scores", {}).get(name)
        cells = [f"{summary['entropy'][name]:.3f}"] + (
            [f"{scored[k]:.4f}" for k in ("aer", "precision", "recall")] if scored else ["–"] * 3)
        lines.append(f"<tr><td>{name}</td>" + "".join(f'<td class="num">{c}</td>' for c in cells) + "</tr>")
    items = pairs
    if progress:
        from tqdm import tqdm

        items = tqdm(pairs, desc="drawing", unit="pair", leave=False)
    sections = []
    for pair in items:
        sections.append(_pair_html(pair, drawing.png_base64(drawing.pair_figure(pair)), threshold))
        if stopping.requested():
            break
    total = len(pairs) if total is None else total
    about = (f"mode <b>{html.escape(str(summary.get('mode')))}</b> · checkpoint "
             f"{html.escape(str(summary.get('checkpoint')))}"
             f" · {len(sections)} of {total} pairs drawn · rows: target tokens and &lt;/s&gt;; columns: source tokens; links are the "
             f"argmax per target token{f' with probability ≥ {threshold}' if threshold else ''}; AER at word level")
    document = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_POLICY}">
<title>{html.escape(title)} — varattn alignments</title><style>{_STYLE}</style></head>
<body><h1>{html.escape(title)}</h1><p>{about}</p>
<table><tr>{head}</tr>{''.join(lines)}</table>
<input id="filter" type="search" placeholder="show only pairs containing…">
{''.join(sections)}
<script>{_SCRIPT}</script></body></html>
"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document, encoding="utf-8")
    return len(sections)
