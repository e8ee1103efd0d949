"""The body of `varattn align`: extract, export, score and draw a run's alignments, and the browsable
self-contained HTML report (:func:`write_html`: one file, images inline as base64 PNG, no script or
style from anywhere else — a Content-Security-Policy forbids every network request).

Output folder (see :mod:`varattn.analysis.align` for the exports): ``alignments.json``, ``{name}.align``,
``{name}.words.align``, ``pictures/pair-NNNNN.{png,svg}`` for the first pairs, ``grid.{png,svg}``
(several pairs on one page), ``summary.json`` (files, AER per distribution when gold links are known,
mean entropies), and the HTML report where asked. The word aligner's outputs (see
:mod:`varattn.analysis.wordlinks`): ``links.align`` (the chosen word links, one direction or symmetrised,
indexing the words of ``tokens.txt``), ``scores.tsv`` (per sentence), the probability and word-pair files
where asked, and with a reverse run its own exports in ``reverse/`` (their links written source-target,
as ``links.align``; its ``alignments.json`` holds the reverse run's matrices as it computed them).
``summary.json``'s ``warnings`` say when the links may mislead (an untrained run, a threshold that kept
almost nothing).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
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
from varattn.training import checkpoint
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


@dataclass
class AlignInput:
    """What to align: a prepared split (``data``, ``split``), a ``source ||| target`` file (``pairs``) or
    two parallel files (``src``, ``tgt``), raw or ``pretokenized``; its first ``limit`` pairs (None: all).
    ``gold``: word links to score against, Pharaoh ``i-j`` sure / ``ipj`` possible, one line per pair
    (``one_based``: the file counts from 1; with ``data`` the split's own gold links serve by default)."""

    data: PreparedData | None = None
    split: str = "test"
    src: str | None = None
    tgt: str | None = None
    pairs: str | None = None
    pretokenized: bool = False
    limit: int | None = None
    gold: str | None = None
    one_based: bool = False


@dataclass
class LinkOptions:
    """How ``links.align`` is drawn (see :mod:`varattn.analysis.wordlinks`): from ``distribution`` (None:
    the posterior where the model has one) by ``method`` (``argmax`` or ``threshold``) with ``threshold``
    (also the piece exports' threshold). With ``reverse_run`` (a run trained the other way) both directions,
    combined by ``symmetrize`` (None: grow-diag-final-and); ``soft_threshold`` for soft-product and soft-mean."""

    distribution: str | None = None
    method: str = "argmax"
    threshold: float = 0.0
    reverse_run: LoadedRun | None = None
    symmetrize: str | None = None
    soft_threshold: float = 0.25


@dataclass
class LinkFiles:
    """Files beside ``links.align`` where asked: one probability per link (``probs``, awesome-align's
    format) and the linked words (``words``: ``src<separator>tgt`` per link)."""

    probs: str | None = None
    words: str | None = None
    separator: str = "<sep>"


@dataclass
class ReportOptions:
    """The pictures: the first ``pictures`` pairs one file each in ``formats``, ``grid`` pairs on one page
    (0: none), and the HTML report at ``html`` drawing its first ``html_limit`` pairs (None or 0: all; a
    second or two each), with the model's greedy translation of each source unless ``translate`` is off."""

    pictures: int = 10
    formats: Sequence[str] = ("png", "svg")
    grid: int = 6
    html: str | None = None
    html_limit: int | None = HTML_LIMIT
    translate: bool = True


#: thresholded links keeping fewer than this share of the argmax links draw a warning
FEW_LINKS = 0.1
#: a validation perplexity at least this share of the target vocabulary is a model that has hardly learnt
UNTRAINED_PPL = 0.5
#: a KL(q || prior) per token below this: the posterior is still the prior
UNTRAINED_KL = 0.01


def training_warnings(run: LoadedRun) -> list[str]:
    """Why the links of ``run`` may mean little, from the run's own validation record (the checkpoint's
    history): no validation at all, a perplexity near that of a uniform guess over the target vocabulary,
    or (models with q) a KL near 0, where the posterior is still the prior. An export keeps no record: []."""
    if run.exported:
        return []
    progress = checkpoint.read_meta(run.checkpoint).get("progress") or {}
    history, steps = progress.get("history") or [], progress.get("step", 0)
    where, after = run.checkpoint, f"{steps} training step{'' if steps == 1 else 's'}"
    if not history:
        return [f"{where}: no validation was done ({after}), so nothing says the model has "
                "learnt: its links may be those of an untrained model — train it longer"]
    last, vocab = history[-1], len(run.data.tgt_vocab)
    found = []
    ppl = last.get("ppl")
    if isinstance(ppl, (int, float)) and ppl >= UNTRAINED_PPL * vocab:
        found.append(f"{where}: validation perplexity {ppl:.1f} after {after} is near the "
                     f"{vocab} words of the target vocabulary (a uniform guess): the model has hardly learnt and "
                     "its links are close to arbitrary — train it longer")
    kl = last.get("kl")
    if run.model.has_posterior and isinstance(kl, (int, float)) and kl < UNTRAINED_KL:
        found.append(f"{where}: KL(q || prior) {kl:.4f} per token at the last validation ({after}): "
                     "the posterior is still the prior, so its links are the prior's — train it longer")
    return found


def sparse_links_warning(chosen: Sequence, pairs: Sequence[PairAlignment], links: LinkOptions) -> str | None:
    """A warning when a thresholded choice of links (``soft-*``, ``method="threshold"``, a threshold above
    0) kept fewer than :data:`FEW_LINKS` of the forward argmax links of ``pairs`` (one per target word),
    naming the threshold to lower; else None. ``chosen``: the word alignments written to links.align."""
    from varattn.analysis import symmetrize as sym
    from varattn.analysis import wordlinks

    soft = links.reverse_run is not None and links.symmetrize in sym.SOFT
    if not (soft or links.method == "threshold" or links.threshold > 0):
        return None
    argmax = sum(len(a.links) for a in wordlinks.one_direction(pairs, links.distribution))
    kept = sum(len(a.links) for a in chosen)
    if not argmax or kept >= FEW_LINKS * argmax:
        return None
    what, name, value = ((links.symmetrize, "soft_threshold", links.soft_threshold) if soft else
                         (f"links {links.method}", "threshold", links.threshold))
    return (f"{what} kept {kept} links where the argmax of each target word gives {argmax}: the probabilities are "
            f"too diffuse for {name}={value:g} — lower it (links below it are dropped)")


def run_align(run: LoadedRun, out: str | Path, inputs: AlignInput, links: LinkOptions | None = None,
              files: LinkFiles | None = None, report: ReportOptions | None = None, *, progress: bool = False,
              echo: Callable[[str], None] = lambda _: None) -> dict:
    """Everything `varattn align` does; returns (and writes to ``out/summary.json``) a summary.

    ``inputs`` says what to align, ``links`` how ``out/links.align`` is chosen (one direction, or both
    and symmetrised), ``files`` what else is written of those links beside ``out/scores.tsv``, ``report``
    what is drawn; ``summary["html"]`` says how many pairs the HTML report drew. ``summary["warnings"]``
    (each also given to ``echo``) says when the links may mislead: a run that looks untrained
    (:func:`training_warnings`) or a threshold that kept almost no links (:func:`sparse_links_warning`).

    When SIGINT or SIGTERM asks to stop (:mod:`varattn.stopping`), the batch in progress is finished, the
    pairs complete so far are exported, and ``summary["partial"]`` says what was left out.
    """
    from varattn.analysis import pictures as drawing
    from varattn.analysis import symmetrize as sym
    from varattn.analysis import wordlinks

    links, files, report = links or LinkOptions(), files or LinkFiles(), report or ReportOptions()
    reverse_run, data, gold = links.reverse_run, inputs.data, inputs.gold
    for option, value in (("threshold", links.threshold), ("soft_threshold", links.soft_threshold)):
        if not 0.0 <= value <= 1.0:
            raise UserError(f"{option} {value}: give a probability between 0 and 1")
    if links.method not in wordlinks.METHODS:
        raise UserError(f"links {links.method!r}: choose one of {', '.join(wordlinks.METHODS)}")
    if links.symmetrize is not None and links.symmetrize not in sym.HEURISTICS:
        raise UserError(f"symmetrize {links.symmetrize!r}: choose one of {', '.join(sym.HEURISTICS)}")
    if links.symmetrize is not None and reverse_run is None:
        raise UserError(f"symmetrize {links.symmetrize}: needs a run trained the other way (reverse_run)")
    for loaded in (run, reverse_run):
        if loaded is not None and not loaded.task.aligns_sequences:
            raise UserError(f"{loaded.checkpoint}: a {loaded.task.name} model — varattn align works on "
                            "translation and transduction models")
    distribution = links.distribution
    for loaded in (run, reverse_run) if distribution else ():
        if loaded is None or isinstance(loaded.model, CrossAttentionMaps):
            continue
        names = align.distributions(loaded.config.model.mode, loaded.model.has_posterior)
        if distribution not in names and names != ("attention",):  # fail before the slow part
            raise UserError(f"distribution {distribution!r}: {loaded.checkpoint.parent} gives only "
                            f"{', '.join(names)} — choose one of them")
    symmetrize = links.symmetrize
    if reverse_run is not None:
        align.check_reverse(run, reverse_run)
        symmetrize = symmetrize or "grow-diag-final-and"
    out = Path(out)
    reverse_pairs = None
    limit, split = inputs.limit, inputs.split
    if data is None:
        src_words, tgt_words = read_inputs(run, pairs=inputs.pairs, src=inputs.src, tgt=inputs.tgt,
                                           pretokenized=inputs.pretokenized, limit=limit)
        if gold:  # a bad gold file stops before the slow part
            for n, (s, t, known) in enumerate(zip(src_words, tgt_words,
                                                  aer.read_gold(gold, one_based=inputs.one_based)), 1):
                aer.check_bounds(known, len(s), len(t), f"{gold}:{n}")
    warnings = [line for loaded in (run, reverse_run) if loaded is not None for line in training_warnings(loaded)]
    if data is not None:
        pairs = align.align_split(run, data, split, limit=limit, progress=progress)
        if reverse_run is not None:
            from varattn.data.text.prepared import load_prepared

            other = load_prepared(data.path, reverse=not data.reverse)
            reverse_pairs = align.align_split(reverse_run, other, split, limit=limit, progress=progress)
        source = {"data": str(data.path), "split": split}
    else:
        pairs = align.align_words(run, src_words, tgt_words, progress=progress)
        if reverse_run is not None:
            reverse_pairs = align.align_words(reverse_run, tgt_words, src_words, progress=progress)
        source = {"pairs": inputs.pairs} if inputs.pairs else {"src": inputs.src, "tgt": inputs.tgt}
        source["pretokenized"] = inputs.pretokenized
    partial = None
    pictures, grid, html_path = report.pictures, report.grid, report.html
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
        golds = aer.read_gold(gold, one_based=inputs.one_based)
        align.attach_gold(pairs, golds, gold)
        if reverse_pairs is not None:
            align.attach_gold(reverse_pairs, [aer.GoldLinks(frozenset(sym.transpose(g.sure)),
                                                            frozenset(sym.transpose(g.possible))) for g in golds], gold)
    drawn = pairs[:report.html_limit] if report.html_limit else pairs
    if report.translate and html_path:
        echo(f"translating {len(drawn)} sources")
        align.translate(run, drawn, progress=progress)
    threshold = links.threshold
    meta = {"checkpoint": str(run.checkpoint), "mode": run.config.model.mode, **source}
    written = align.write_exports(pairs, out, threshold=threshold, meta=meta)
    found = align.scores(pairs, threshold)
    if reverse_pairs is not None:
        chosen = wordlinks.two_directions(pairs, reverse_pairs, symmetrize, name=distribution,
                                          reverse_name=distribution, method=links.method, threshold=threshold,
                                          soft_threshold=links.soft_threshold)
        written += align.write_exports(reverse_pairs, out / "reverse", threshold=threshold, transpose=True,
                                       meta={"checkpoint": str(reverse_run.checkpoint),
                                             "mode": reverse_run.config.model.mode, **source,
                                             "links": "source-target, as links.align (the matrices: the reverse "
                                                      "run's own, rows its targets)"})
    else:
        chosen = wordlinks.one_direction(pairs, distribution, method=links.method, threshold=threshold)
    sparse = sparse_links_warning(chosen, pairs, links)
    if sparse:
        warnings.append(sparse)
    written += wordlinks.write(chosen, out / "links.align", probs_path=files.probs, words_path=files.words,
                               scores_path=out / "scores.tsv", separator=files.separator)
    (out / "tokens.txt").write_text("".join(line + "\n" for line in wordlinks.tokens_lines(chosen)), encoding="utf-8")
    written.append(out / "tokens.txt")
    items = pairs[:pictures]
    if items or (grid and pairs):
        echo(f"drawing {len(items)} pictures{' and a grid' if grid and pairs else ''} into {out}")
    if progress and items:
        from tqdm import tqdm

        items = tqdm(items, desc="drawing", unit="picture", leave=False)
    for pair in items:
        figure = drawing.pair_figure(pair, f"pair {pair.index}")
        written += drawing.save(figure, out / "pictures" / f"pair-{pair.index:05d}", report.formats)
        if stopping.requested():
            break
    if grid and pairs:
        written += drawing.save(drawing.grid_figure(pairs[:grid], columns=2), out / "grid", report.formats)
    summary = {**meta, "pairs": len(pairs), "threshold": threshold,
               "entropy": {name: mean([p.entropy[name] for p in pairs])
                           for name in (pairs[0].matrices if pairs else [])},
               "scores": {name: counts.as_dict() for name, counts in found.items()},
               "links": {"distribution": wordlinks.pick(pairs[0], distribution) if pairs else distribution,
                         "method": links.method, "symmetrize": symmetrize,
                         "mean_log_prob": mean([a.score for a in chosen if a.links])},
               "warnings": warnings}
    if reverse_pairs is not None:
        summary["reverse"] = {"checkpoint": str(reverse_run.checkpoint),
                              "scores": {k: c.as_dict() for k, c in align.scores(reverse_pairs, threshold).items()}}
    if pairs and pairs[0].gold is not None:
        summary["links"]["score"] = wordlinks.score(chosen, [p.gold for p in pairs]).as_dict()
    if html_path:
        echo(f"drawing {len(drawn)} of {len(pairs)} pairs into {html_path}")
        title = f"{Path(run.checkpoint).parent.name}: {source.get('split', inputs.src)}"
        shown = write_html(drawn, html_path, title=title, summary=summary, threshold=threshold, progress=progress,
                           total=len(pairs))
        summary["html"] = {"path": str(html_path), "drawn": shown, "pairs": len(pairs)}
        written.append(Path(html_path))
    signum = stopping.requested()
    if signum and partial is None:
        partial = f"stopped by {stopping.name(signum)} while drawing: exports complete, pictures and report cut short"
    if partial:
        summary["partial"] = partial
    summary["files"] = [str(path) for path in written]
    (out / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    for line in warnings:  # once everything is written: a run that fails says only why
        echo(f"warning: {line}")
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
