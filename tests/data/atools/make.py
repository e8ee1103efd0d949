"""Make the atools fixtures of tests/test_symmetrize.py: random directional link sets and what fast_align's
``atools -c HEURISTIC`` makes of them.

    python tests/data/atools/make.py --atools /path/to/fast_align/build/atools

(fast_align from github.com/clab/fast_align, commit cab1e9a, built with cmake; the fixtures were made so.)
Writes ``links.txt``: per line ``forward ||| reverse ||| intersect ||| union ||| grow-diag |||
grow-diag-final ||| grow-diag-final-and``, Pharaoh ``i-j`` links, 0-based, both directions in (source,
target) order, as atools reads them.
"""

import argparse
import random
import subprocess
import tempfile
from pathlib import Path

HEURISTICS = ("intersect", "union", "grow-diag", "grow-diag-final", "grow-diag-final-and")


def sample(rng: random.Random) -> tuple[set, set]:
    S, T = rng.randint(1, 14), rng.randint(1, 14)
    style = rng.random()
    if style < 0.6:  # directional aligners' output: each target (source) word has at most one link
        forward = {(rng.randrange(S), j) for j in range(T) if rng.random() > 0.1}
        reverse = {(i, rng.randrange(T)) for i in range(S) if rng.random() > 0.1}
        if rng.random() < 0.5:  # near the diagonal, as real alignments are
            forward = {(min(S - 1, max(0, round(j * S / T) + rng.randint(-1, 1))), j) for _, j in forward}
            reverse = {(i, min(T - 1, max(0, round(i * T / S) + rng.randint(-1, 1)))) for i, _ in reverse}
    else:  # dense random link sets
        density = rng.uniform(0.05, 0.5)
        forward = {(i, j) for i in range(S) for j in range(T) if rng.random() < density}
        reverse = {(i, j) for i in range(S) for j in range(T) if rng.random() < density}
    return forward, reverse


def line(links) -> str:
    return " ".join(f"{i}-{j}" for i, j in sorted(links))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--atools", required=True)
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=26)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    pairs = [sample(rng) for _ in range(args.pairs)]
    with tempfile.TemporaryDirectory() as tmp:
        fw, rv = Path(tmp) / "fw", Path(tmp) / "rv"
        fw.write_text("".join(line(f) + "\n" for f, _ in pairs))
        rv.write_text("".join(line(r) + "\n" for _, r in pairs))
        columns = [subprocess.run([args.atools, "-i", str(fw), "-j", str(rv), "-c", h], check=True,
                                  capture_output=True, text=True).stdout.splitlines() for h in HEURISTICS]
    out = Path(__file__).with_name("links.txt")
    out.write_text("".join(" ||| ".join([line(f), line(r)] + [c[n].strip() for c in columns]) + "\n"
                           for n, (f, r) in enumerate(pairs)))
    print(f"{out}: {len(pairs)} pairs")


if __name__ == "__main__":
    main()
