"""The body of `varattn align`: extract, export, score and draw a run's alignments, and the browsable
self-contained HTML report (:func:`write_html`: one file, images inline as base64 PNG, no script or
style from anywhere else — a Content-Security-Policy forbids every network request).

Output folder (see :mod:`varattn.analysis.align` for the exports): ``alignments.json``, ``{name}.align``,
``{name}.words.align``, ``pictures/pair-NNNNN.{png,svg}`` for the first pairs, ``grid.{png,svg}``
(several pairs on one page), ``summary.json`` (files, AER per distribution when gold links are known,
mean entropies), and the HTML report where asked.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Callable, Sequence

from varattn.analysis import aer

from varattn.analysis import align
from varattn.analysis.align import PairAlignment
from varattn.data.text.prepared import PreparedData
from varattn.data.text.tokenize import remove_bpe
from varattn.errors import UserError
from varattn.training.runs import LoadedRun


def run_align(run: LoadedRun, out: str | Path, *, data: PreparedData | None = None, split: str = "test",
              src: str | None = None, tgt: str | None = None, gold: str | None = None, one_based: bool = False,
              limit: int | None = None, threshold: float = 0.0, pictures: int = 10,
              formats: Sequence[str] = ("png", "svg"), grid: int = 6, html_path: str | None = None,
              translate: bool = True, progress: bool = False,
              echo: Callable[[str], None] = lambda _: None) -> dict:
    """Everything `varattn align` does; returns (and writes to ``out/summary.json``) a summary."""
    from varattn.analysis import pictures as drawing

    if not 0.0 <= threshold <= 1.0:
        raise UserError(f"--threshold {threshold}: give a probability between 0 and 1")
    task = getattr(run, "task", None)
    if task is not None and getattr(task, "name", "translation") != "translation":
        raise UserError(f"{run.checkpoint}: a {task.name} model — varattn align works on translation models")
    out = Path(out)
    if data is not None:
        pairs = align.align_split(run, data, split, limit=limit, progress=progress)
        source = {"data": str(data.path), "split": split}
    else:
        if not (src and tgt):
            raise UserError("give --data DIR (with --split) or both --src FILE and --tgt FILE")
        from varattn.data.textio import read_parallel

        src_lines, tgt_lines = read_parallel(src, tgt)
        pairs = align.align_lines(run, src_lines[:limit], tgt_lines[:limit], progress=progress)
        source = {"src": src, "tgt": tgt}
    if gold:
        align.attach_gold(pairs, aer.read_gold(gold, one_based=one_based), gold)
    if translate and html_path:
        echo(f"translating {len(pairs)} sources")
        align.translate(run, pairs, progress=progress)
    meta = {"checkpoint": str(run.checkpoint), "mode": run.config.model.mode, **source}
    files = align.write_exports(pairs, out, threshold=threshold, meta=meta)
    found = align.scores(pairs, threshold)
    for pair in pairs[:pictures]:
        figure = drawing.pair_figure(pair, f"pair {pair.index}")
        files += drawing.save(figure, out / "pictures" / f"pair-{pair.index:05d}", formats)
    if grid and pairs:
        files += drawing.save(drawing.grid_figure(pairs[:grid], columns=2), out / "grid", formats)
    summary = {**meta, "pairs": len(pairs), "threshold": threshold,
               "entropy": {name: mean([p.entropy[name] for p in pairs])
                           for name in (pairs[0].matrices if pairs else [])},
               "scores": {name: counts.as_dict() for name, counts in found.items()}}
    if html_path:
        echo(f"drawing {len(pairs)} pairs into {html_path}")
        write_html(pairs, html_path, title=f"{Path(run.checkpoint).parent.name}: {source.get('split', src)}",
                   summary=summary, threshold=threshold, progress=progress)
        files.append(Path(html_path))
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
    if pair.gold is not None:
        rows.append(("AER", " · ".join(f"{name} {aer.counts(pair.word_links(name, threshold), pair.gold).aer:.3f}"
                                         for name in pair.matrices)))
    body = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in rows)
    return (f'<section class="pair" id="pair-{pair.index}"><h2><a href="#pair-{pair.index}">pair {pair.index}</a>'
            f'</h2><dl>{body}</dl><img alt="alignment matrices of pair {pair.index}" '
            f'src="data:image/png;base64,{image}"></section>')


def write_html(pairs: Sequence[PairAlignment], path: str | Path, *, title: str, summary: dict,
               threshold: float = 0.0, progress: bool = False) -> Path:
    """One self-contained HTML file: a summary table, a filter box and every pair with its picture."""
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
    sections = [_pair_html(pair, drawing.png_base64(drawing.pair_figure(pair)), threshold) for pair in items]
    about = (f"mode <b>{html.escape(str(summary.get('mode')))}</b> · checkpoint "
             f"{html.escape(str(summary.get('checkpoint')))}"
             f" · {len(pairs)} pairs · rows: target tokens and &lt;/s&gt;; columns: source tokens; links are the "
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
    return path
