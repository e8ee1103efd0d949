"""Training an aligner on a CPU: where a training step goes, and what ``train.enumerate_topk`` (the
likelihood enumerated at the K positions of highest prior score only) costs and saves on the Hansards
En-Fr dev gold.

The data are benchmarks/align_hansards.py's: Multi30k En-Fr train plus the 447 gold sentences (lowercased,
Moses escapes undone), BPE with ``--bpe-merges`` merges, the gold sentences as the validation split.

``--profile``: one thread, in this process; ``--steps`` training steps (after two not counted) of each
recipe, the step split into the model's forward pass (encoder and decoder), the likelihood's
enumeration, the objective (the chain's forward algorithm for hmm), the backward pass and the update:

- ``configs/align/hmm.yaml`` (what ``varattn align-corpus`` trains), exact (top-K does not apply: its
  chain needs every emission);
- the top-K recipe (``--recipe``, default configs/align/hmm.yaml with ``model.mode=marginal
  model.emission=state``: the word predicted from the decoder state and the source vector, whose
  enumeration costs a V-way softmax per (target, source) pair) exact and at each ``--ks``.

``--train``: the top-K recipe trained both directions at once (one thread each, ``--epochs`` epochs), exact
and at each K; the two runs' last checkpoints align the 447 gold pairs (the exact posterior's links,
each target word's argmax) and are scored forward, reverse and intersected.

    python benchmarks/enumerate_topk.py --profile
    python benchmarks/enumerate_topk.py --train --ks 3 10

Writes ``enumerate_topk.json`` and ``.md`` into ``--results`` (default ``benchmarks/results``); a run adds
to the figures already there (the profile and the trained rows are kept apart).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import harness
from align_hansards import score_stage, write_corpus
from harness import RESULTS, ROOT, command_line, fmt, table, write_results

HMM = ROOT / "configs" / "align" / "hmm.yaml"
STATE = ["model.mode=marginal", "model.emission=state"]
PARTS = ("forward", "enumeration", "objective", "backward", "update")


def prepare(work: Path, merges: int) -> tuple[dict, Path]:
    files = write_corpus(work / "text")
    data = work / f"data-bpe{merges}"
    if not (data / "meta.json").is_file():
        harness.varattn("prepare", "files", "--train-src", files["train.en"], "--train-tgt", files["train.fr"],
                        "--valid-src", files["valid.en"], "--valid-tgt", files["valid.fr"], "--src-lang", "en",
                        "--tgt-lang", "fr", "--no-lowercase", "--bpe-merges", merges, "--max-len", "80",
                        "--out", data, log=work / "prepare.log")
    return files, data


def profile(recipe: Path, overrides: list[str], data: Path, topk: int, steps: int) -> dict:
    """Mean milliseconds of each part of a training step (``PARTS``), and their total."""
    import torch

    from varattn import config as config_lib
    from varattn import latent
    from varattn.data.text.batching import collate
    from varattn.training.trainer import Trainer

    torch.set_num_threads(1)
    config = config_lib.load(str(recipe), [*overrides, f"data.dir={data}", "train.device=cpu",
                                           "train.progress=false", f"train.enumerate_topk={topk}"])
    work = Path("/tmp") / f"enumerate-topk-profile-{time.time_ns()}"
    trainer = Trainer(config, work)
    model, mode = trainer.model.train(), trainer.model.mode
    batches = trainer.batcher.batches(1)
    spent = {part: 0.0 for part in PARTS}
    tokens = 0
    for number, indices in enumerate(batches[:steps + 2]):
        batch = collate(trainer.train_split, indices)
        began = time.perf_counter()
        out = trainer.net(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, batch.tgt_lengths)
        part = {"forward": time.perf_counter() - began}
        if mode.chain:  # the emissions, then the chain's forward algorithm on them
            began = time.perf_counter()
            emissions = out.likelihood.enumerate()
            part["enumeration"] = time.perf_counter() - began
            out.likelihood.enumerate = lambda: emissions
            began = time.perf_counter()
            loss, stats = latent.batch_objective(mode, out)
            part["objective"] = time.perf_counter() - began
        else:  # one call does both: the enumeration is timed alone (without its graph), the rest is the objective
            part["enumeration"] = _enumeration_seconds(out, topk)
            began = time.perf_counter()
            loss, stats = latent.batch_objective(mode, out)
            part["objective"] = max(0.0, time.perf_counter() - began - part["enumeration"])
        began = time.perf_counter()
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        part["backward"] = time.perf_counter() - began
        began = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.clip_norm)
        trainer.optimizer.step()
        part["update"] = time.perf_counter() - began
        if number >= 2:
            for name in PARTS:
                spent[name] += part[name]
            tokens += stats["tokens"]
    counted = max(1, min(steps, len(batches) - 2))
    result = {part: 1000 * seconds / counted for part, seconds in spent.items()}
    result.update(step=sum(result.values()), tokens_per_step=tokens / counted, steps=counted,
                  steps_per_epoch=len(batches), topk=topk, overrides=overrides, recipe=harness.rel(recipe))
    return result


def _enumeration_seconds(out, topk: int) -> float:
    """Seconds of the likelihood's enumeration alone (all positions, or the top K of the prior), without
    building its graph."""
    import torch

    from varattn import latent

    with torch.no_grad():
        began = time.perf_counter()
        if topk:
            scores = out.prior if out.posterior is None else out.posterior
            index = scores.masked_fill(~out.mask, float("-inf")).topk(min(topk, scores.size(-1)), -1).indices
            latent.enumerate_positions(out.likelihood, index)
        else:
            out.likelihood.enumerate()
        return time.perf_counter() - began


def train_both(recipe: Path, overrides: list[str], data: Path, work: Path, topk: int, epochs: int) -> dict:
    """Both directions at once, one thread each; wall minutes, steps and each run's summary."""
    runs = {d: work / f"topk{topk}-{d}" for d in ("en-fr", "fr-en")}
    began = time.perf_counter()
    processes = []
    done = [_summary(work / f"{run.name}.log") for run in runs.values()]
    if all(done) and all((run / "checkpoint_last.json").is_file() for run in runs.values()):
        return _trained(topk, runs, None, done)  # trained by an earlier call that stopped before scoring
    for direction, run in runs.items():
        if (run / "checkpoint_last.json").is_file():
            raise SystemExit(f"{run} exists: remove it (or give another --work) to train again")
        processes.append(harness.start(harness.varattn_command(
            "train", str(recipe), "--out", str(run), f"data.dir={data}",
            f"data.reverse={'true' if direction == 'fr-en' else 'false'}", *overrides, f"train.epochs={epochs}",
            f"train.enumerate_topk={topk}", "train.progress=false", "train.device=cpu"), log=work / f"{run.name}.log"))
    codes = [harness.wait(p, check=False) for p in processes]
    if any(codes):
        raise SystemExit(f"training failed ({codes}): see {work}/topk{topk}-*.log")
    wall = (time.perf_counter() - began) / 60
    return _trained(topk, runs, wall, [_summary(work / f"{run.name}.log") for run in runs.values()])


def _summary(log: Path) -> dict | None:
    """The JSON summary ``varattn train`` printed at the end of its log, or None."""
    if not log.is_file():
        return None
    text = log.read_text(encoding="utf-8")
    start = text.rfind("\n{")
    end = text.rfind("}")
    try:
        return json.loads(text[start + 1:end + 1]) if 0 <= start < end else None
    except json.JSONDecodeError:
        return None


def _trained(topk: int, runs: dict, wall: float | None, summaries: list) -> dict:
    """``minutes``: the longer direction's training by its own count (``seconds`` of its summary);
    ``wall``: both directions' processes, start-up included (None when not timed by this call)."""
    logs = {d: [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()] for d, run in runs.items()}
    return {"topk": topk, "minutes": max(s["seconds"] for s in summaries) / 60, "wall_minutes": wall, "runs": runs,
            "steps": {d: log[-1]["step"] for d, log in logs.items()},
            "ppl": {d: log[-1].get("ppl") for d, log in logs.items()}}


def markdown(record: dict) -> str:
    out = ["# Training an aligner on a CPU: where the step goes, and top-K enumeration", ""]
    profiles = record.get("profile", [])
    if profiles:
        out += ["## Where a training step goes", "",
                f"One thread, the mean of {profiles[0]['steps']} training steps (after two not counted) on the Hansards "
                f"En-Fr training text (BPE {record['bpe_merges']} merges, `data.max_tokens` of the recipe). "
                "*forward*: the model's pass (encoder, decoder loop, prior); *enumeration*: ℓ(s) = log p(y_t | z_t = s) "
                "at every source position (or the K kept); *objective*: the rest of the loss (hmm: the chain's "
                "forward algorithm); *backward*: every gradient; *update*: clipping and Adam.", "",
                table(["recipe", "K", "forward", "enumeration", "objective", "backward", "update", "step ms",
                       "tokens / step", "s / epoch"],
                      [[p["name"], p["topk"] or "exact", *(f"{p[part]:.0f}" for part in PARTS), f"{p['step']:.0f}",
                        f"{p['tokens_per_step']:.0f}", f"{p['step'] * p['steps_per_epoch'] / 1000:.0f}"]
                       for p in profiles], align="llrrrrrrrr"), "",
                f"`{record.get('profile_command')}` (commit {record.get('profile_commit')}, {record.get('profile_date')})", ""]
    trained = record.get("trained", [])
    if trained:
        out += ["## What top-K costs on the dev gold", "",
                f"`{record['train_recipe']}` with {' '.join(record['train_overrides'])}, "
                f"{record['epochs']} epoch(s) each direction, both directions at once (one thread each); AER of "
                "the exact posterior's links (each target word's argmax, pieces averaged) on the 447 gold pairs; "
                "evaluation is exact for every K. Minutes are each run's own count of its training (validation and "
                "saves included) on the shared two-core machine, other jobs running beside them.", "",
                table(["K", "step ms (profile)", "minutes (training, the longer direction)", "steps fwd / rev",
                       "valid PPL fwd / rev", "AER forward", "AER reverse", "AER intersect", "intersect P / R"],
                      [[row["topk"] or "exact", fmt(row.get("step_ms"), ".0f"), f"{row['minutes']:.1f}",
                        f"{row['steps']['en-fr']} / {row['steps']['fr-en']}",
                        f"{fmt(row['ppl']['en-fr'], '.1f')} / {fmt(row['ppl']['fr-en'], '.1f')}",
                        *(f"{row['scores'][k]['aer']:.3f}" for k in ("forward", "reverse", "intersect")),
                        f"{row['scores']['intersect']['precision']:.3f} / {row['scores']['intersect']['recall']:.3f}"]
                       for row in trained], align="rrrrrrrrl"), "",
                "Rows by " + "; ".join(f"K={k}: `{c}` (commit {record.get('train_commits', {}).get(k)})"
                                        for k, c in record.get("train_commands", {}).items()), ""]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="store_true", help="time the parts of a training step")
    parser.add_argument("--train", action="store_true", help="train exact and top-K aligners, score them")
    parser.add_argument("--recipe", default=str(HMM), help="the top-K recipe (with --overrides)")
    parser.add_argument("--overrides", nargs="*", default=STATE)
    parser.add_argument("--ks", type=int, nargs="+", default=[3, 5, 10])
    parser.add_argument("--no-exact", action="store_true", help="--train: only the top-K runs")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--bpe-merges", type=int, default=4000)
    parser.add_argument("--work", default="runs/enumerate-topk")
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args()
    work = Path(args.work)
    files, data = prepare(work, args.bpe_merges)
    stem = Path(args.results) / "enumerate_topk"
    path = stem.with_name(stem.name + ".json")
    record = json.loads(path.read_text()) if path.is_file() else {}
    for key in ("command", "commit", "machine", "date"):  # the stamp of the call that wrote it; this one restamps
        record.pop(key, None)
    record["bpe_merges"] = args.bpe_merges
    command = command_line(__file__)
    if args.profile:
        record["profile"] = [dict(profile(HMM, [], data, 0, args.steps), name="hmm.yaml (align-corpus)")]
        for k in [0, *args.ks]:
            record["profile"].append(dict(profile(Path(args.recipe), args.overrides, data, k, args.steps),
                                          name=f"{Path(args.recipe).name} {' '.join(args.overrides)}"))
            print(json.dumps(record["profile"][-1]), flush=True)
        record.update(profile_command=command, profile_commit=harness.commit(), profile_date=harness.now())
        write_results(stem, record, markdown(record), command=command, threads=1)
    if args.train:
        step_ms = {p["topk"]: p["step"] for p in record.get("profile", [])[1:]}
        record.update(train_recipe=harness.rel(args.recipe), train_overrides=args.overrides, epochs=args.epochs)
        trained = {row["topk"]: row for row in record.get("trained", [])}
        for k in ([] if args.no_exact else [0]) + args.ks:
            row = train_both(Path(args.recipe), args.overrides, data, work, k, args.epochs)
            scored = {r["distribution"]: r for r in score_stage(row["runs"]["en-fr"], row["runs"]["fr-en"],
                                                                files["gold.pairs"])}
            name = "exact-posterior" if "exact-posterior" in scored else "posterior"
            row.update(distribution=name, scores={k2: scored[name][k2] for k2 in ("forward", "reverse", "intersect")},
                       step_ms=step_ms.get(k), runs={d: str(r) for d, r in row["runs"].items()})
            trained[k] = row
            record["trained"] = [trained[key] for key in sorted(trained, key=lambda x: (x != 0, x))]
            record.setdefault("train_commands", {})[str(k)] = command
            record.setdefault("train_commits", {})[str(k)] = harness.commit()
            write_results(stem, record, markdown(record), command=command, threads=1)
            print(f"K={k or 'exact'}: {row['minutes']:.1f} min, intersect AER {row['scores']['intersect']['aer']:.3f}",
                  flush=True)


if __name__ == "__main__":
    main()
