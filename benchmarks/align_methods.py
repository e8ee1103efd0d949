"""Post-hoc alignment methods on one trained pair of directions (issue 26, item 4): which distribution,
which BPE-to-word aggregation and which link rule give the best word links on the Hansards En-Fr gold.

One ``varattn align-corpus`` job (its defaults: configs/align/hmm.yaml both ways, on one thread) trains the
two directions on benchmarks/align_data.py's text (Multi30k En-Fr train, then the 447 gold sentences).
Each direction's last checkpoint (the one the command aligns with) then aligns the 447 gold pairs through
:func:`varattn.analysis.align.align_words`, which gives every distribution the model has as matrices over
BPE pieces (``[T_pieces + 1, S_pieces]``). From those, computed here:

- **distribution**: ``prior`` p(z_t | x, y<t), ``posterior`` (for the HMM the exact forward-backward
  marginal p(z_t | x, y); a ``vae-*`` run's q), ``viterbi`` (one-hot path), ``exact-posterior``
  p(z_t | x, y<=t) for enumerated non-chain modes — whichever the run gives;
- **aggregation** of pieces into a ``[S_words, T_words]`` word matrix W (the source pieces of word i are
  summed first, then over the pieces t of target word j): ``mean`` (varattn's, wordlinks.word_matrix),
  ``max`` (the target piece that is surest), ``first`` (the first piece alone), and ``any`` (the piece
  argmax links, a word pair linked when any of its pieces is: hard links only, so no soft rule);
- **link rule**: one direction's argmax, argmax kept when W >= tau, every cell >= tau; the hard
  symmetrisations of the two argmax link sets (varattn.analysis.symmetrize); intersect and
  grow-diag-final-and of the argmax >= tau sets; ``soft-product`` and ``soft-mean`` of the two matrices,
  >= tau.

Every tau is chosen on the first half of the gold pairs (dev, the lowest AER over a fixed grid) and the
method scored once on the second half (test), beside a paired bootstrap of its test AER minus that of
varattn's default (posterior, mean, argmax, intersect: what ``links.align`` holds). The default's links
are checked against the job's own ``links.align``.

    flock /tmp/heavy.lock python benchmarks/align_methods.py --data ../shared/data --work runs/align-methods
    python benchmarks/align_methods.py --job /tmp/am/aligned      (a finished align-corpus job on this text)

The gold pairs are aligned by the varattn that this process imports (``PYTHONPATH`` may name another
``src``, e.g. the one benchmarks/peer_aligners.py unpacks; the record names it).

Writes ``align_methods.{json,md}`` into ``--results`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

import harness
from align_data import write_training_text
from harness import RESULTS, SHARED, command_line, fmt, table, write_results

GRID = (0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7,
        0.75, 0.8, 0.85, 0.9, 0.95)
AGGREGATIONS = ("mean", "max", "first", "any")
DEFAULT = ("posterior", "mean", "intersect")
BOOTSTRAP = 2000

Link = tuple[int, int]


# ----------------------------------------------------------------------------- word matrices


def word_matrix(pieces: np.ndarray, src: list[str], tgt: list[str], how: str) -> np.ndarray:
    """``pieces`` ``[T_pieces, S_pieces]`` (rows: target pieces, ``</s>`` left out) -> W ``[S_words,
    T_words]`` by ``how`` (``mean``, ``max``, ``first``); each source word's pieces summed."""
    from varattn.analysis.aer import word_index

    src_word, tgt_word = np.asarray(word_index(src)), np.asarray(word_index(tgt))
    S, T = int(src_word.max()) + 1, int(tgt_word.max()) + 1
    by_src = np.zeros((pieces.shape[0], S))
    np.add.at(by_src.T, src_word, pieces.T)  # [T_pieces, S]
    out = np.zeros((S, T))
    if how == "mean":
        np.add.at(out.T, tgt_word, by_src)
        return out / np.bincount(tgt_word, minlength=T)[None, :]
    if how == "max":
        np.maximum.at(out.T, tgt_word, by_src)
        return out
    if how == "first":
        first = np.unique(tgt_word, return_index=True)[1]
        return by_src[first].T.copy()
    raise ValueError(f"unknown aggregation {how!r}")


class Pair:
    """One gold pair seen by both directions: per distribution, the piece matrices of the forward run
    (``[T_fr_pieces, S_en_pieces]``) and the reverse run (``[T_en_pieces, S_fr_pieces]``)."""

    def __init__(self, forward, reverse):
        self.forward, self.reverse = forward, reverse
        self.S, self.T = len(forward.src_words), len(forward.tgt_words)
        self._words: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}

    def matrices(self, name: str, how: str) -> tuple[np.ndarray, np.ndarray]:
        """F, R, both ``[S_en_words, T_fr_words]``: F[i, j] = p(en i | fr j), R[i, j] = p(fr j | en i)."""
        if (name, how) not in self._words:
            fp, rp = self.forward, self.reverse
            fw = word_matrix(fp.matrices[name][: len(fp.tgt) - 1], fp.src, fp.tgt[:-1], how)
            rv = word_matrix(rp.matrices[name][: len(rp.tgt) - 1], rp.src, rp.tgt[:-1], how).T
            self._words[name, how] = fw, rv
        return self._words[name, how]

    def any_links(self, name: str, threshold: float) -> tuple[set[Link], set[Link]]:
        """Piece argmax links (kept when >= threshold) mapped to words, both directions in (en, fr) order."""
        return any_piece(self.forward, name, threshold), {(i, j) for j, i in any_piece(self.reverse, name, threshold)}


def any_piece(pair, name: str, threshold: float) -> set[Link]:
    """(source word, target word) for every target piece's most probable source piece, kept when its
    probability is at least ``threshold``: a word pair is linked when any of their pieces is."""
    from varattn.analysis.aer import word_index

    pieces = pair.matrices[name][: len(pair.tgt) - 1]  # [T_pieces, S_pieces]
    src_word, tgt_word = word_index(pair.src), word_index(pair.tgt[:-1])
    best = pieces.argmax(1)
    return {(src_word[best[t]], tgt_word[t]) for t in range(pieces.shape[0]) if pieces[t, best[t]] >= threshold}


# ----------------------------------------------------------------------------- link rules


def argmax_links(matrix: np.ndarray, threshold: float) -> set[Link]:
    """Per column j of ``[S, T]``: its best row, kept when at least ``threshold``."""
    from varattn.analysis import wordlinks

    return wordlinks.extract(matrix, "argmax", threshold)


def directional(pair: Pair, name: str, how: str, threshold: float) -> tuple[set[Link], set[Link]]:
    """Both directions' argmax links (>= threshold), in (en, fr) order."""
    if how == "any":
        return pair.any_links(name, threshold)
    fw, rv = pair.matrices(name, how)
    return argmax_links(fw, threshold), {(i, j) for j, i in argmax_links(rv.T, threshold)}


def rules() -> dict[str, dict]:
    """Link rules: name -> {tuned: whether tau is chosen on dev, soft: whether it needs word matrices,
    links: (pair, distribution, aggregation, tau) -> links}."""
    from varattn.analysis import symmetrize

    def hard(heuristic: str) -> Callable:
        def links(pair, name, how, tau):
            fw, rv = directional(pair, name, how, tau)
            return symmetrize.symmetrize(fw, rv, heuristic, pair.S, pair.T)
        return links

    def soft(how_combined: str) -> Callable:
        def links(pair, name, how, tau):
            fw, rv = pair.matrices(name, how)
            return symmetrize.soft_links(symmetrize.combine(fw, rv, how_combined), tau)
        return links

    def cells(pair, name, how, tau):
        fw, _ = pair.matrices(name, how)
        return symmetrize.soft_links(fw, tau)

    out = {
        "forward argmax": {"tuned": False, "links": lambda p, n, h, t: directional(p, n, h, 0.0)[0]},
        "reverse argmax": {"tuned": False, "links": lambda p, n, h, t: directional(p, n, h, 0.0)[1]},
        "forward argmax >= tau": {"tuned": True, "links": lambda p, n, h, t: directional(p, n, h, t)[0]},
        "reverse argmax >= tau": {"tuned": True, "links": lambda p, n, h, t: directional(p, n, h, t)[1]},
        "forward cells >= tau": {"tuned": True, "soft": True, "links": cells},
    }
    for heuristic in symmetrize.HARD:
        untuned = hard(heuristic)
        out[heuristic] = {"tuned": False, "links": lambda p, n, h, t, f=untuned: f(p, n, h, 0.0)}
    out["intersect of argmax >= tau"] = {"tuned": True, "links": hard("intersect")}
    out["grow-diag-final-and of argmax >= tau"] = {"tuned": True, "links": hard("grow-diag-final-and")}
    for combined in symmetrize.SOFT:
        rule = soft(combined)
        out[f"{combined} >= 0.25"] = {"tuned": False, "soft": True,
                                      "links": lambda p, n, h, t, f=rule: f(p, n, h, 0.25)}
        out[f"{combined} >= tau"] = {"tuned": True, "soft": True, "links": rule}
    return out


KEY_RULES = ("forward argmax", "reverse argmax", "intersect", "grow-diag-final-and", "intersect of argmax >= tau",
             "soft-product >= tau", "soft-mean >= tau")


# ----------------------------------------------------------------------------- scoring


def sentence_counts(links: list[set[Link]], golds: list) -> np.ndarray:
    """``[pairs, 4]``: |A|, |S|, |A ∩ S|, |A ∩ P| per sentence."""
    return np.asarray([[len(a), len(g.sure), len(a & g.sure), len(a & g.possible)] for a, g in zip(links, golds)],
                      dtype=np.int64)


def scores(counts: np.ndarray) -> dict:
    """AER, precision, recall from summed ``[..., 4]`` counts."""
    a, s, hit_s, hit_p = (int(x) for x in counts.sum(0))
    return {"aer": 1.0 - (hit_s + hit_p) / (a + s) if a + s else 0.0, "precision": hit_p / a if a else 1.0,
            "recall": hit_s / s if s else 1.0, "links": a}


def aer_of_samples(counts: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """Corpus AER of each bootstrap sample (``samples`` ``[B, n]``: sentence indices) -> ``[B]``."""
    summed = counts[samples].sum(1)  # [B, 4]
    return 1.0 - (summed[:, 2] + summed[:, 3]) / np.maximum(summed[:, 0] + summed[:, 1], 1)


# ----------------------------------------------------------------------------- the job


def ensure_job(args, text: Path) -> tuple[Path, float | None]:
    """The align-corpus output folder (run here, timed, unless ``--job`` names a finished one) and the
    minutes this process spent on it (None when reused)."""
    if args.job:
        job = Path(args.job)
        if not (job / "summary.json").is_file():
            raise SystemExit(f"{job}: no summary.json — give a finished `varattn align-corpus` output folder")
        return job, None
    job = Path(args.work) / "aligned"
    if (job / "summary.json").is_file():
        return job, None
    seconds = harness.varattn("align-corpus", text / "train.en-fr", "--out", job, "--threads", 1,
                              log=Path(args.work) / "align-corpus.log", threads=1)
    return job, seconds / 60


def gold_pairs(job: Path, text: Path) -> tuple[list[Pair], float]:
    """Both directions' alignments of the gold pairs (every distribution, over pieces) and the seconds."""
    import torch

    from varattn.analysis import align
    from varattn.training.runs import load_run

    torch.set_num_threads(1)
    lines = [line.split(" ||| ") for line in (text / "gold.en-fr").read_text(encoding="utf-8").splitlines()]
    english, french = [e.split() for e, _ in lines], [f.split() for _, f in lines]
    started = time.perf_counter()
    runs = {d: load_run(job / "work" / "runs" / d / "checkpoint_last.json", torch.device("cpu"))
            for d in ("forward", "reverse")}
    forward = align.align_words(runs["forward"], english, french)
    reverse = align.align_words(runs["reverse"], french, english)
    return [Pair(f, r) for f, r in zip(forward, reverse)], time.perf_counter() - started


def evaluate(pairs: list[Pair], golds: list, dev: slice, test: slice) -> tuple[list[dict], dict]:
    """Every (distribution, aggregation, rule) row, tau chosen on ``dev``, scored on ``test``; and the
    per-sentence test counts of each row (for the bootstrap)."""
    names = [n for n in ("prior", "posterior", "exact-posterior", "viterbi") if n in pairs[0].forward.matrices]
    combos = [(name, "mean") for name in names] + [("posterior", how) for how in AGGREGATIONS if how != "mean"]
    rows, test_counts = [], {}
    for name, how in combos:
        for rule, spec in rules().items():
            if how == "any" and spec.get("soft"):
                continue
            started = time.perf_counter()
            grid = GRID if spec["tuned"] else (None,)
            tried = []
            for tau in grid:
                counts = sentence_counts([spec["links"](p, name, how, tau) for p in pairs], golds)
                tried.append((scores(counts[dev])["aer"], tau, counts))
            best = min(tried, key=lambda item: item[0])  # the first of equals: grid order
            dev_aer, tau, counts = best
            seconds = time.perf_counter() - started
            test_counts[(name, how, rule)] = counts[test]
            rows.append({"distribution": name, "aggregation": how, "rule": rule, "tau": tau,
                         "dev_aer": round(dev_aer, 4), **{k: round(v, 4) if isinstance(v, float) else v
                                                          for k, v in scores(counts[test]).items()},
                         "all_447": {k: round(v, 4) if isinstance(v, float) else v for k, v in scores(counts).items()},
                         "link_seconds": round(seconds, 2)})
    return rows, test_counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED), help="the shared data folder")
    parser.add_argument("--work", default="runs/align-methods", help="folder for the text and the job")
    parser.add_argument("--job", help="a finished `varattn align-corpus` output folder on this text (else one is run)")
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args()
    from varattn.analysis import aer

    text = Path(args.work) / "text"
    manifest = write_training_text(args.data, text)
    job, job_minutes = ensure_job(args, text)
    summary = json.loads((job / "summary.json").read_text(encoding="utf-8"))
    if job_minutes is None:
        job_minutes = sum(summary["seconds"].values()) / 60  # the job's own count of its stages
    golds = aer.read_gold(text / "gold.align")
    pairs, align_seconds = gold_pairs(job, text)
    half = len(golds) // 2
    dev, test = slice(0, half), slice(half, len(golds))
    rows, test_counts = evaluate(pairs, golds, dev, test)

    default = test_counts[DEFAULT]
    rng = np.random.default_rng(0)
    samples = rng.integers(0, len(default), size=(BOOTSTRAP, len(default)))
    default_aers = aer_of_samples(default, samples)
    for row in rows:
        difference = aer_of_samples(test_counts[(row["distribution"], row["aggregation"], row["rule"])],
                                    samples) - default_aers
        row["minus_default"] = round(row["aer"] - scores(default)["aer"], 4)
        row["minus_default_95"] = [round(float(x), 4) for x in np.percentile(difference, [2.5, 97.5])]
        row["minutes"] = round(job_minutes + (align_seconds + row["link_seconds"]) / 60, 2)

    shipped = [line.split() for line in (job / "links.align").read_text(encoding="utf-8").splitlines()[-len(golds):]]
    mine = rules()["intersect"]["links"]
    same = sum({tuple(map(int, x.split("-"))) for x in line} == mine(p, "posterior", "mean", 0.0)
               for line, p in zip(shipped, pairs))
    best = min(rows, key=lambda r: r["dev_aer"])
    import varattn

    record = {"text": manifest, "job": str(job), "varattn_src": str(Path(varattn.__file__).resolve().parent.parent),
              "job_summary": {k: summary[k] for k in ("seconds", "training") if k in summary},
              "job_minutes": round(job_minutes, 2), "align_gold_seconds": round(align_seconds, 2),
              "dev_pairs": [dev.start, dev.stop], "test_pairs": [test.start, test.stop], "grid": GRID,
              "bootstrap": BOOTSTRAP, "default": list(DEFAULT),
              "distributions": list(pairs[0].forward.matrices),
              "default_matches_links_align": f"{same} of {len(golds)} pairs", "best_on_dev": best, "rows": rows}
    write_results(Path(args.results) / "align_methods", record, markdown(record), command=command_line(__file__),
                  threads=1)
    print(f"default test AER {scores(default)['aer']:.3f}; best on dev: {best['distribution']} {best['aggregation']} "
          f"{best['rule']} (tau {best['tau']}) test AER {best['aer']:.3f}")


def markdown(record: dict) -> str:
    def line(row: dict, *first: str) -> list[str]:
        low, high = row["minus_default_95"]
        is_default = [row["distribution"], row["aggregation"], row["rule"]] == record["default"]
        versus = "(the default)" if is_default else f"{row['minus_default']:+.3f} [{low:+.3f}, {high:+.3f}]"
        return [*first, fmt(row["tau"], "g"), f"{row['dev_aer']:.3f}", f"**{row['aer']:.3f}**",
                f"{row['precision']:.3f}", f"{row['recall']:.3f}", versus, f"{row['minutes']:.1f}"]

    head = ["tau (dev)", "dev AER", "test AER", "test P", "test R", "test AER - default [95%]", "minutes"]
    rows = record["rows"]
    by_rule = [line(r, r["rule"]) for r in rows if r["distribution"] == "posterior" and r["aggregation"] == "mean"]
    by_dist = [line(r, r["distribution"], r["rule"]) for r in rows
               if r["aggregation"] == "mean" and r["rule"] in KEY_RULES]
    by_agg = [line(r, r["aggregation"], r["rule"]) for r in rows
              if r["distribution"] == "posterior" and r["rule"] in KEY_RULES]
    best = record["best_on_dev"]
    d, t = record["dev_pairs"], record["test_pairs"]
    return "\n".join([
        "# Post-hoc alignment methods on one trained pair of directions (Hansards En-Fr gold)", "",
        f"One `varattn align-corpus` job with its defaults on one thread ({record['text']['pairs']:,} pairs: "
        f"Multi30k En-Fr train + the 447 gold sentences; {record['job_minutes']:.1f} minutes), its two "
        f"directions' last checkpoints aligning the 447 gold pairs ({record['align_gold_seconds']:.0f} s, every "
        f"distribution). Thresholds tau are chosen on the dev half (gold pairs {d[0] + 1}-{d[1]}, lowest AER on "
        f"the grid {', '.join(map(str, record['grid']))}); everything is scored once on the test half (pairs "
        f"{t[0] + 1}-{t[1]}). The default is {' / '.join(record['default'])} (what `links.align` holds; "
        f"recomputed here, it matches the job's `links.align` on {record['default_matches_links_align']}). "
        f"The difference from the default has a paired bootstrap 95% interval over test sentences "
        f"({record['bootstrap']} resamples). Minutes: the job plus aligning the gold pairs plus this method's "
        "links (its tau search included). The run gives the distributions "
        f"{', '.join(record['distributions'])} (`exact-posterior` p(z_t | x, y<=t) exists for enumerated modes "
        "without a chain; an HMM's `posterior` is already its exact marginal).", "",
        f"Best on dev over every row: **{best['distribution']} / {best['aggregation']} / {best['rule']}** "
        f"(tau {fmt(best['tau'], 'g')}): test AER {best['aer']:.3f} (P {best['precision']:.3f}, R "
        f"{best['recall']:.3f}), {best['minus_default']:+.3f} against the default.", "",
        "## Link rules (posterior, mean aggregation)", "",
        table(["rule", *head], by_rule, align="l" + "r" * len(head)), "",
        "## Distributions (mean aggregation)", "",
        table(["distribution", "rule", *head], by_dist, align="ll" + "r" * len(head)), "",
        "## BPE-to-word aggregation (posterior)", "",
        "`mean`: W[i, j] is the mean over target word j's pieces of the probability of source word i's pieces "
        "(varattn's); `max`: the largest over j's pieces; `first`: j's first piece alone; `any`: the piece "
        "argmax links, a word pair linked when any of its pieces is (no soft rule).", "",
        table(["aggregation", "rule", *head], by_agg, align="ll" + "r" * len(head))])


if __name__ == "__main__":
    main()
