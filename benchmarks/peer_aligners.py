"""Peer word aligners on the English-French gold set (issue 26): eflomal and fast_align, trained on exactly
the text varattn's aligner trains on, scored by varattn's own AER and symmetrisation.

Training text (:mod:`align_data`): Multi30k En-Fr train (29,000 pairs) followed by the 447 Hansards gold
sentences, Moses escapes undone, lowercased; AER, precision and recall over the 447 gold pairs (sure and
possible links, i English, j French). Each aligner runs both directions on one thread (OMP_NUM_THREADS=1):

- eflomal (the pip package's ``eflomal-align``, its defaults: IBM1 + HMM + fertility, 3 samplers) gives
  both directions in one run;
- fast_align (``-d -o -v``, its recommended options; ``-r`` for the reverse direction), when
  ``--fast-align-dir`` (or the environment variable ``FAST_ALIGN_DIR``) holds the ``fast_align`` and
  ``atools`` binaries built from github.com/clab/fast_align (``mkdir build && cd build && cmake .. &&
  make``; libsparsehash is optional); without them its rows are skipped, with the reason printed;
- varattn's default, with ``--varattn``: ``varattn align-corpus train.en-fr --threads 1`` (the HMM
  recipe, both directions one after the other on one thread), its ``forward.align`` and ``reverse.align``
  scored like the others; its time and memory are the whole job's (prepare, train, align all pairs). Its
  code is the ``src/`` of ``--varattn-version`` (default HEAD, unpacked under ``--work``), so that files
  being edited in the checkout do not enter the figures.

Rows: forward (each French word's English word), reverse (each English word's French word, written in
forward orientation by every tool), and varattn's intersect, union, grow-diag-final and
grow-diag-final-and of the two. Wall time and peak memory (the aligner process and its children's peak
resident set) per row: a directional row costs its run (eflomal's one run and varattn's one job give both
directions), a symmetrised row the run(s) plus varattn's symmetrisation of all 29,447 pairs. With
fast_align's binaries, atools' own symmetrisation of the same links is compared with varattn's, pair for
pair, for every aligner. ``--repeats N`` runs
the aligners N times, interleaved (eflomal, fast_align, eflomal, ...); eflomal samples, so its AER varies
from run to run: the table gives each row's mean and range over the repeats.

    python benchmarks/peer_aligners.py --data ../shared/data --fast-align-dir /tmp/fast_align/build --varattn

Writes ``peer_aligners.{json,md}`` into ``--results`` (default ``benchmarks/results``), with the command,
the commit and the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from align_data import write_training_text  # the shared training text
from harness import RESULTS, command_line, environment, source_tree, table, write_results

SYMMETRISED = ("intersect", "union", "grow-diag-final", "grow-diag-final-and")


def measured(command: list[str], stdout: Path | None = None, env: dict | None = None) -> dict:
    """Run ``command`` on one thread (``env``: its environment); its wall seconds and peak resident memory
    (MiB, itself and the children it waited for)."""
    env = env or environment(threads=1)
    started = time.perf_counter()
    with open(stdout, "w") if stdout else open(os.devnull, "w") as out, open(os.devnull, "w") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)}: exit status {os.waitstatus_to_exitcode(status)}")
    return {"seconds": round(seconds, 2), "peak_mib": round(usage.ru_maxrss / 1024, 1)}


def read_links(path: Path) -> list[set]:
    links = []
    for line in path.read_text(encoding="utf-8").splitlines():
        links.append({tuple(int(x) for x in item.split("-")) for item in line.split()})
    return links


def run_eflomal(text: Path, work: Path, repeat: int) -> tuple[dict, list[set], list[set]]:
    fw, rv = work / f"eflomal.{repeat}.fwd", work / f"eflomal.{repeat}.rev"
    cost = measured([str(Path(sys.executable).with_name("eflomal-align")), "-i", str(text / "train.en-fr"),
                     "-f", str(fw), "-r", str(rv), "--overwrite"])
    return {"forward": cost, "reverse": cost, "runs": "one run, both directions"}, read_links(fw), read_links(rv)


def run_fast_align(text: Path, work: Path, binaries: Path, repeat: int) -> tuple[dict, list[set], list[set]]:
    fw, rv = work / f"fast_align.{repeat}.fwd", work / f"fast_align.{repeat}.rev"
    command = [str(binaries / "fast_align"), "-i", str(text / "train.en-fr"), "-d", "-o", "-v"]
    cost = {"forward": measured(command, fw), "reverse": measured(command + ["-r"], rv),
            "runs": "one run per direction"}
    return cost, read_links(fw), read_links(rv)


def run_varattn(text: Path, work: Path, repeat: int, src: Path) -> tuple[dict, list[set], list[set]]:
    """``varattn align-corpus`` with its defaults on one thread, from scratch, its code from ``src``; the
    directions' links are copied to ``varattn.REPEAT.{fwd,rev}`` (both source-target, as fast_align
    writes them). The same command again with ``--symmetrize soft-product`` (it redoes only the
    symmetrisation, from the directions' word matrices) gives the extra row ``soft-product >= 0.25``;
    a last run puts the default links back into ``links.align``."""
    import shutil

    out = work / f"varattn.{repeat}"
    if out.exists():
        shutil.rmtree(out)
    command = [sys.executable, "-m", "varattn", "align-corpus", str(text / "train.en-fr"), "--out", str(out),
               "--threads", "1"]
    env = environment(threads=1, PYTHONPATH=str(src.resolve()))
    cost = measured(command, env=env)
    fw, rv = work / f"varattn.{repeat}.fwd", work / f"varattn.{repeat}.rev"
    shutil.copyfile(out / "forward.align", fw)
    shutil.copyfile(out / "reverse.align", rv)
    soft = measured(command + ["--symmetrize", "soft-product"], env=env)
    soft["links"] = read_links(out / "links.align")
    measured(command, env=env)
    cost = {"forward": cost, "reverse": cost, "runs": "one job, both directions",
            "extra": {"soft-product >= 0.25": soft}}
    return cost, read_links(fw), read_links(rv)


def fast_align_binaries(given: str | None) -> tuple[Path | None, str]:
    """The folder with ``fast_align`` and ``atools`` (``given``, else ``$FAST_ALIGN_DIR``), or None with the
    reason it is not usable."""
    given = given or os.environ.get("FAST_ALIGN_DIR")
    if not given:
        return None, "no --fast-align-dir and no FAST_ALIGN_DIR"
    for name in ("fast_align", "atools"):
        if not os.access(Path(given) / name, os.X_OK):
            return None, f"{Path(given) / name} is missing or not executable"
    return Path(given), ""


def atools(binaries: Path, fw: Path, rv: Path, heuristic: str) -> list[set]:
    found = subprocess.run([str(binaries / "atools"), "-i", str(fw), "-j", str(rv), "-c", heuristic],
                           check=True, capture_output=True, text=True).stdout
    return [{tuple(int(x) for x in item.split("-")) for item in line.split()} for line in found.splitlines()]


def rows_of(cost: dict, forward: list[set], reverse: list[set], golds: list, first_gold: int) -> dict:
    """AER/precision/recall and cost of every row for one run of an aligner."""
    from varattn.analysis import aer, symmetrize

    def scored(links: list[set]) -> dict:
        return aer.score(links[first_gold:first_gold + len(golds)], golds).as_dict()

    both = max(cost["forward"]["peak_mib"], cost["reverse"]["peak_mib"])
    if cost["forward"] is cost["reverse"]:
        runs_seconds = cost["forward"]["seconds"]
    else:
        runs_seconds = cost["forward"]["seconds"] + cost["reverse"]["seconds"]
    rows = {"forward": {**scored(forward), **cost["forward"]}, "reverse": {**scored(reverse), **cost["reverse"]}}
    for heuristic in SYMMETRISED:
        started = time.perf_counter()
        links = [symmetrize.symmetrize(f, r, heuristic) for f, r in zip(forward, reverse)]
        seconds = time.perf_counter() - started
        rows[heuristic] = {**scored(links), "seconds": round(runs_seconds + seconds, 2), "peak_mib": both,
                           "symmetrize_seconds": round(seconds, 2), "links": links}
    for name, extra in cost.get("extra", {}).items():  # rows an aligner makes itself, after its run(s)
        rows[name] = {**scored(extra["links"]), "seconds": round(runs_seconds + extra["seconds"], 2),
                      "peak_mib": max(both, extra["peak_mib"])}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data", help="the shared data folder")
    parser.add_argument("--work", default="runs/peer-aligners", help="folder for the text and the links")
    parser.add_argument("--fast-align-dir", help="folder with the fast_align and atools binaries (default: "
                        "$FAST_ALIGN_DIR; without them no fast_align rows)")
    parser.add_argument("--varattn", action="store_true", help="also run varattn align-corpus (its defaults, "
                        "one thread; about 6 minutes)")
    parser.add_argument("--varattn-version", default="HEAD", help="the git commit whose src/ --varattn runs "
                        "(WORKTREE: this checkout's files as they are)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each aligner, interleaved")
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args()
    from importlib.metadata import version

    from varattn.analysis import aer

    work = Path(args.work)
    text = work / "text"
    manifest = write_training_text(args.data, text)
    golds = aer.read_gold(text / "gold.align")
    first_gold = manifest["gold_first_line"] - 1
    aligners = ["eflomal"]
    binaries, why = fast_align_binaries(args.fast_align_dir)
    if binaries is None:
        print(f"fast_align rows skipped: {why} — build github.com/clab/fast_align (cmake .. && make) and give "
              "its build folder as --fast-align-dir", file=sys.stderr, flush=True)
    else:
        aligners.append("fast_align")
    if args.varattn:
        aligners.append("varattn")
        varattn_src = source_tree(args.varattn_version, work / "src-trees")
        varattn_commit = (args.varattn_version if args.varattn_version == "WORKTREE" else subprocess.run(
            ["git", "rev-parse", "--short", args.varattn_version], check=True, capture_output=True,
            text=True).stdout.strip())
    runs: dict[str, list[dict]] = {name: [] for name in aligners}
    parity = {}
    for repeat in range(args.repeats):
        for name in aligners:
            print(f"repeat {repeat + 1}/{args.repeats}: {name}", file=sys.stderr, flush=True)
            if name == "eflomal":
                cost, forward, reverse = run_eflomal(text, work, repeat)
            elif name == "fast_align":
                cost, forward, reverse = run_fast_align(text, work, binaries, repeat)
            else:
                cost, forward, reverse = run_varattn(text, work, repeat, varattn_src)
            rows = rows_of(cost, forward, reverse, golds, first_gold)
            if binaries is not None and repeat == 0:  # atools on the same links, pair for pair
                prefix = work / f"{name}.{repeat}"
                for heuristic in SYMMETRISED:
                    theirs = atools(binaries, Path(f"{prefix}.fwd"), Path(f"{prefix}.rev"), heuristic)
                    ours = rows[heuristic]["links"]
                    parity[f"{name} {heuristic}"] = {
                        "pairs": len(ours), "pairs_differing": sum(a != b for a, b in zip(ours, theirs)),
                        "links_varattn": sum(map(len, ours)), "links_atools": sum(map(len, theirs)),
                        "links_differing": sum(len(a ^ b) for a, b in zip(ours, theirs))}
            for heuristic in SYMMETRISED:
                del rows[heuristic]["links"]
            runs[name].append(rows)
    scores = {}
    for name, repeats in runs.items():
        scores[name] = {}
        for row in repeats[0]:
            values = [r[row] for r in repeats]
            scores[name][row] = {key: round(statistics.mean(v[key] for v in values), 4)
                                 for key in ("aer", "precision", "recall", "seconds", "peak_mib")}
            scores[name][row]["aer_range"] = [round(min(v["aer"] for v in values), 4),
                                              round(max(v["aer"] for v in values), 4)]
    versions = {"eflomal": version("eflomal")}
    if binaries is not None:
        versions["fast_align"] = "github.com/clab/fast_align (built from --fast-align-dir)"
    if args.varattn:
        versions["varattn"] = f"align-corpus defaults, src/ of commit {varattn_commit}"
    document = {"versions": versions, "text": manifest, "repeats": args.repeats, "table": scores, "runs": runs,
                "atools_parity": parity}
    write_results(Path(args.results) / "peer_aligners", document, markdown(document), command=command_line(__file__),
                  threads=1)
    print(markdown(document))


def markdown(document: dict) -> str:
    rows = []
    for name, found in document["table"].items():
        for row, v in found.items():
            spread = f" [{v['aer_range'][0]:.3f}-{v['aer_range'][1]:.3f}]" if document["repeats"] > 1 else ""
            rows.append([name, row, f"{v['aer']:.3f}{spread}", f"{v['precision']:.3f}", f"{v['recall']:.3f}",
                         f"{v['seconds']:.1f}", f"{v['peak_mib']:.0f}"])
    lines = ["# Peer aligners on the English-French gold set (447 Hansards pairs)", "",
             "One thread (OMP_NUM_THREADS=1); versions: "
             + ", ".join(f"{k} {v}" for k, v in document["versions"].items()) + ".", "",
             f"Training text: {document['text']['pairs']:,} pairs (Multi30k En-Fr train "
             f"{document['text']['multi30k_pairs']:,} + the {document['text']['gold_pairs']} gold sentences), "
             "Moses escapes undone, lowercased (benchmarks/align_data.py). Symmetrisation and AER: varattn's "
             "(varattn.analysis.symmetrize, varattn.analysis.aer). Seconds: the aligner's run(s) (eflomal: one "
             "run gives both directions; varattn: the whole `align-corpus` job, both directions, and for its "
             "`soft-product >= 0.25` row, links.align of the same job rerun with `--symmetrize soft-product`) "
             "plus, for symmetrised rows, varattn's symmetrisation of all pairs; "
             "peak memory: the aligner process with its children. "
             f"{document['repeats']} run(s) of each aligner, interleaved; AER is the mean, range in brackets.", "",
             table(["aligner", "links", "AER", "precision", "recall", "seconds", "peak MiB"], rows, align="llrrrrr")]
    if document["atools_parity"]:
        parity = [[*key.split(" ", 1), f"{v['pairs_differing']} of {v['pairs']:,}", f"{v['links_varattn']:,}",
                   f"{v['links_atools']:,}", v["links_differing"]] for key, v in document["atools_parity"].items()]
        lines += ["", "varattn's symmetrisation against fast_align's `atools -c` on the same links (all pairs):", "",
                  table(["links", "heuristic", "pairs differing", "links varattn", "links atools", "links differing"],
                        parity, align="llrrrr")]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
