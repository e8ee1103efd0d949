"""Pictures of alignment matrices with matplotlib's Agg canvas (no pyplot, no display, no global state).

- :func:`pair_figure`: one heat map per distribution (source tokens along the top, target tokens down
  the side, ``</s>`` as the last row), side by side, and — when there is a prior and a posterior — an
  overlay in two colours as in Deng et al. (2018): prior in red, posterior in blue, so cells where they
  agree turn pink to white. Heat maps use ``magma``: the larger the probability, the brighter the cell.
  Each picture's colours run from 0 to *its own* largest probability (so a flat prior is not a black
  square); each panel's caption and the colour bar say that maximum, and rows whose entropy is close to
  log S (:func:`near_uniform_rows`) are marked "≈ uniform". Gold links, when known, are outlined in cyan.
- :func:`grid_figure`: several pairs on one page (the overlay, or the single heat map).
- :func:`save`: PNG and/or SVG; :func:`png_base64` for inline images.

BPE pieces are shown without their ``@@`` marker and with a trailing ``·`` when the word continues
(``bicy· cle``); Moses escapes such as ``&apos;`` are shown as the characters they stand for.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from varattn.analysis.align import PairAlignment
from varattn.data.text.tokenize import BPE_SEPARATOR

CMAP = "magma"
CELL = 0.26  # inches per matrix cell
GOLD_COLOUR = "#00e5ff"
FONT = 8


def label(piece: str) -> str:
    """A readable tick label for a model token (no mathtext: ``$`` is escaped)."""
    text = html.unescape(piece)
    if text.endswith(BPE_SEPARATOR):
        text = text[: -len(BPE_SEPARATOR)] + "·"
    return text.replace("$", r"\$")


def overlay_rgb(prior: np.ndarray, posterior: np.ndarray) -> np.ndarray:
    """[T, S] x 2 -> [T, S, 3] on black: red = prior, blue = posterior, green = where both are high."""
    prior, posterior = np.clip(prior, 0, 1), np.clip(posterior, 0, 1)
    return np.stack([prior, 0.85 * np.minimum(prior, posterior), posterior], axis=-1)


def _axes_labels(ax, pair: PairAlignment) -> None:
    ax.set_xticks(range(len(pair.src)), [label(p) for p in pair.src], rotation=90, fontsize=FONT)
    ax.set_yticks(range(len(pair.tgt)), [label(p) for p in pair.tgt], fontsize=FONT)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)


def _gold_cells(pair: PairAlignment) -> list[tuple[int, int]]:
    """Gold word links expanded to every (source piece, target piece) of the linked words."""
    if pair.gold is None:
        return []
    from varattn.analysis.aer import word_index

    src_word, tgt_word = word_index(pair.src), word_index(pair.tgt[:-1])
    linked = pair.gold.possible
    return [(i, j) for i, wi in enumerate(src_word) for j, wj in enumerate(tgt_word) if (wi, wj) in linked]


def _draw(ax, pair: PairAlignment, image: np.ndarray, title: str, **imshow) -> object:
    shown = ax.imshow(image, interpolation="nearest", aspect="equal", **imshow)
    _axes_labels(ax, pair)
    ax.set_title(title, fontsize=FONT + 1)
    for i, j in _gold_cells(pair):
        ax.add_patch(Rectangle((i - 0.4, j - 0.4), 0.8, 0.8, fill=False, edgecolor=GOLD_COLOUR, linewidth=0.9))
    return shown


NEAR_UNIFORM = 0.9  # a row whose entropy is at least this fraction of log S is flagged as near-uniform


def near_uniform_rows(matrix: np.ndarray, fraction: float = NEAR_UNIFORM) -> np.ndarray:
    """[T, S] rows summing to 1 -> bool [T]: the rows whose entropy is at least ``fraction`` of log S, the
    entropy of the uniform distribution (never for S = 1). Colours are scaled to a picture's maximum, so
    such a row, nearly flat, would otherwise look like structure."""
    probs = np.clip(np.asarray(matrix, dtype=np.float64), 0.0, None)
    width = probs.shape[-1]
    if width < 2:
        return np.zeros(probs.shape[0], dtype=bool)
    logs = np.log(np.where(probs > 0, probs, 1.0))
    entropy = -(probs * logs).sum(-1)
    return entropy >= fraction * np.log(width)


def _flag_uniform(ax, matrix: np.ndarray) -> None:
    """Write "≈ uniform" to the right of each near-uniform row."""
    for row in np.flatnonzero(near_uniform_rows(matrix)):
        ax.text(matrix.shape[1] - 0.4, row, " ≈ uniform", va="center", ha="left", fontsize=FONT - 1,
                color="#b00020", clip_on=False)


def peak(pair: PairAlignment, names: Sequence[str] | None = None) -> float:
    """The largest probability of the named matrices (default all): the top of a picture's colour scale."""
    names = list(pair.matrices) if names is None else names
    return max(float(pair.matrices[name].max()) for name in names) or 1.0


def draw_heatmap(ax, pair: PairAlignment, name: str, vmax: float | None = None):
    """One distribution of ``pair`` as a heat map on ``ax`` (linear, 0 to ``vmax``: default its maximum)."""
    vmax = peak(pair, [name]) if vmax is None else vmax
    shown = _draw(ax, pair, pair.matrices[name], name, cmap=CMAP, vmin=0.0, vmax=vmax)
    ax.set_xlabel(f"colours 0 (black) to {vmax:.2f} (white)", fontsize=FONT - 1)
    _flag_uniform(ax, pair.matrices[name])
    return shown


def draw_overlay(ax, pair: PairAlignment, first: str = "prior", second: str = "posterior",
                 vmax: float | None = None):
    """Two distributions in red and blue, each scaled by ``vmax`` (default: their common maximum)."""
    vmax = peak(pair, [first, second]) if vmax is None else vmax
    return _draw(ax, pair, overlay_rgb(pair.matrices[first] / vmax, pair.matrices[second] / vmax),
                 f"{first} (red) + {second} (blue)")


def _size(pair: PairAlignment, panels: int) -> tuple[float, float]:
    width = panels * (len(pair.src) * CELL + 1.4) + 0.8
    height = len(pair.tgt) * CELL + 1.6 + 0.06 * max(len(label(p)) for p in pair.src)
    return width, height


def new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def pair_figure(pair: PairAlignment, title: str | None = None) -> Figure:
    """Heat maps of every distribution side by side, plus the overlay when prior and posterior exist."""
    names = list(pair.matrices)
    overlay = "prior" in names and "posterior" in names
    panels = len(names) + int(overlay)
    figure = new_figure(*_size(pair, panels))
    axes = np.atleast_1d(figure.subplots(1, panels))
    shown = None
    top = peak(pair)
    for ax, name in zip(axes, names):
        shown = draw_heatmap(ax, pair, name, vmax=top)
    if overlay:
        draw_overlay(axes[-1], pair, vmax=top)
    figure.colorbar(shown, ax=list(axes[: len(names)]), shrink=0.6,
                    label=f"p(z = s | t), up to its maximum {top:.2f}")
    if pair.gold is not None:
        title = f"{title}  (cyan boxes: gold links)" if title else "cyan boxes: gold links"
    if title:
        figure.suptitle(title, fontsize=FONT + 2)
    return figure


def grid_figure(pairs: Sequence[PairAlignment], columns: int = 2) -> Figure:
    """Several pairs on one page: each pair's overlay (or its only heat map), titled with its number."""
    columns = max(1, min(columns, len(pairs)))
    rows = -(-len(pairs) // columns)
    width = max(_size(p, 1)[0] for p in pairs)
    height = max(_size(p, 1)[1] for p in pairs)
    figure = new_figure(columns * width, rows * height)
    subfigures = np.atleast_1d(figure.subfigures(rows, columns)).ravel()
    for sub, pair in zip(subfigures, pairs):
        ax = sub.subplots()
        names = list(pair.matrices)
        if "prior" in names and "posterior" in names:
            draw_overlay(ax, pair)
        else:
            draw_heatmap(ax, pair, names[0])
        sub.suptitle(f"pair {pair.index} (colours scaled to its maximum {peak(pair):.2f})", fontsize=FONT + 1)
    for sub in subfigures[len(pairs):]:
        sub.set_visible(False)
    return figure


def directions_figure(src: Sequence[str], tgt: Sequence[str], forward: np.ndarray, reverse: np.ndarray,
                      title: str | None = None, names: tuple[str, str] = ("forward", "reverse")) -> Figure:
    """Both directions of one pair over words: ``forward`` and ``reverse`` are ``[S, T]`` word matrices
    (p(source i | target j), and the reverse model's p(target j | source i) transposed, as in
    :func:`varattn.analysis.wordlinks.directions`); drawn as two heat maps (target words down the side)
    and their overlay (forward red, reverse blue: where both directions agree the cell turns white),
    all scaled to the picture's maximum."""
    top = float(max(forward.max(), reverse.max())) or 1.0
    width = 3 * (len(src) * CELL + 1.4) + 0.8
    height = len(tgt) * CELL + 1.6 + 0.06 * max(len(label(w)) for w in src)
    figure = new_figure(width, height)
    axes = figure.subplots(1, 3)
    images = [(forward.T, names[0]), (reverse.T, names[1]),
              (overlay_rgb(forward.T / top, reverse.T / top), f"red: {names[0]}, blue: {names[1]}")]
    shown = None
    for ax, (image, name) in zip(axes, images):
        if image.ndim == 2:
            shown = ax.imshow(image, interpolation="nearest", aspect="equal", cmap=CMAP, vmin=0.0, vmax=top)
        else:
            ax.imshow(image, interpolation="nearest", aspect="equal")
        ax.set_xticks(range(len(src)), [label(w) for w in src], rotation=90, fontsize=FONT)
        ax.set_yticks(range(len(tgt)), [label(w) for w in tgt], fontsize=FONT)
        ax.xaxis.tick_top()
        ax.tick_params(length=0)
        ax.set_title(name, fontsize=FONT + 1)
    figure.colorbar(shown, ax=list(axes[:2]), shrink=0.6, label=f"p (top of scale: {top:.2f}, this picture's max)")
    if title:
        figure.suptitle(title, fontsize=FONT + 2)
    return figure


def save(figure: Figure, stem: str | Path, formats: Sequence[str] = ("png", "svg"), dpi: int = 100) -> list[Path]:
    """Write ``stem.png`` / ``stem.svg`` (as asked); returns the paths."""
    paths = []
    for fmt in formats:
        path = Path(f"{stem}.{fmt}")
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format=fmt, dpi=dpi)
        paths.append(path)
    return paths


def png_base64(figure: Figure, dpi: int = 72) -> str:
    """The figure as a base64 PNG, for ``<img src="data:image/png;base64,...">``."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
