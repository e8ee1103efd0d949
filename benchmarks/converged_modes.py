"""The converged CPU-scale table of the paper's nine modes (issue 16).

One recipe for every mode: Multi30k De-En, pairs of at most 14 BPE tokens (2k merges; evaluation splits
filtered the same way), a 64-dim model, batches of 400 padded tokens, Adam with the same learning-rate
grid for every mode, the learning rate halved after each epoch without a better validation metric and
training ended at the first epoch without improvement once it reached lr/8 (early stopping with a
patience of four epochs), at most ``--epochs`` epochs. The best checkpoint by the mode's validation
metric (exact PPL, or ELBO PPL with q for ``vae-*``) is scored on test: exact PPL, K-max 5 PPL, BLEU of
beam 5 over the exact marginal. Every mode is also trained on the synthetic corpus (the quick start's
sizes, lr 3e-3, the same stopping rule) and its prior's argmax links are scored against the gold links
(AER; soft attention's own weights for ``soft``).

Work is a queue of jobs that any number of workers share (a job is claimed by creating its folder under
``WORK/claims``); each finished job writes ``WORK/results/JOB.json``, so a stop loses at most the jobs in
progress, and a killed job resumes (``varattn train --resume``) when it is claimed again
(``--release`` gives back the claims of dead workers). Seeds 2 and 3 of ``--seeded`` modes run once a
mode's whole grid has finished, at its best learning rate; the grid runs first, its first rate for every
mode before the second. (Until 2026-12-04 seeds ran as soon as the first rate had finished, at the best
rate so far; ``report`` says where a finished grid disagrees with seeds run that way.)

    python benchmarks/converged_modes.py run --work runs/converged        # one worker; start two for two cores
    python benchmarks/converged_modes.py report --work runs/converged     # tables, as far as the runs go

Writes ``benchmarks/results/converged_modes.{json,md}`` on ``report``.

``--set SECTION.FIELD=VALUE ...`` runs a variant of the protocol: those settings are added to every job
(Multi30k and synthetic), and the report names them. Give a variant its own ``--work`` and ``--results``:

    python benchmarks/converged_modes.py run --work runs/converged-no-input-feed --modes soft vae-enum \
        --seeded soft vae-enum --set model.input_feed=false

``--arch transformer`` (issue 24) runs the same protocol (data, batches, learning-rate grid, stopping
rule, seeds, test metrics, synthetic jobs) with the Transformer: ``configs/multi30k/transformer.yaml`` at
``TRANSFORMER``'s sizes (those of ``benchmarks/transformer_multi30k.py``) and, on the synthetic corpus,
``configs/quickstart.yaml`` with ``model.arch=transformer`` at ``TRANSFORMER_SYNTHETIC``'s sizes (those of
``benchmarks/transformer_alignment.py``); Adam's beta2 is the LSTM's 0.999 (the recipe's is 0.98), and
training runs in bf16 autocast on CPUs with native bf16 products (``train.cpu_bf16=true``; validation and
test in float32). Its defaults: ``--work runs/converged-transformer``, results
``benchmarks/results/converged_modes_transformer.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import harness
from harness import RESULTS, ROOT, SHARED, command_line, fmt, rel, table, write_results, write_text

MODES = ["soft", "marginal", "hard-enum", "hard-sample", "vae-enum", "vae-sample", "vae-gumbel", "vae-rws",
         "vae-dirichlet"]
CHEAPEST_FIRST = ["soft", "vae-dirichlet", "hard-sample", "vae-gumbel", "vae-sample", "vae-rws", "vae-enum",
                  "marginal", "hard-enum"]
SEEDED = ["soft", "vae-dirichlet", "vae-sample", "marginal", "vae-enum"]  # cheapest first
LRS = [0.003, 0.001]  # the first is run for every mode before the seeds
MODEL = {"emb_size": 64, "enc_hidden": 64, "enc_layers": 1, "dec_hidden": 128, "dec_layers": 1,
         "attn_size": 64, "inf_hidden": 64, "inf_layers": 1, "dropout": 0.2,
         "enum_block": 100000}  # a batch's cells in one block: speed only, the same values
# settings a mode needs beyond the shared ones, and why (reported with the table)
MODE_SETTINGS = {
    "vae-gumbel": {"model.temperature": 0.5},  # tau 0.1 learns too slowly here (vae_dirichlet.md)
    "vae-rws": {"model.samples": 5},
    # q = prior + inference network (the default): with the paper's independent q the prior stays flat, and
    # the paper's warm-up collapses it at the switch (vae_dirichlet.md)
    "vae-dirichlet": {"train.warmup_steps": 0, "model.posterior_param": "residual"},
}
# --arch transformer: benchmarks/transformer_multi30k.py's sizes on Multi30k, transformer_alignment.py's on
# the synthetic corpus (2+2 layers of width 64 beside the quick start's 64-dim LSTM)
TRANSFORMER = {"encoder_layers": 2, "decoder_layers": 2, "width": 128, "heads": 4, "ffn": 256, "dropout": 0.2,
               "attention_dropout": 0.1, "inf_layers": 1}
TRANSFORMER_SYNTHETIC = {"encoder_layers": 2, "decoder_layers": 2, "width": 64, "heads": 4, "ffn": 128,
                         "dropout": 0.1, "attention_dropout": 0.0, "inf_layers": 1}
# the LSTM's Adam (the default beta2; the Transformer recipe's is 0.98), bf16 training on this CPU
TRANSFORMER_SHARED = {"model.arch": "transformer", "model.enum_block": 100000, "train.adam_beta2": 0.999,
                      "train.cpu_bf16": "true"}
ARCHS = {"rnn": {"work": "converged", "results": "converged_modes"},
         "transformer": {"work": "converged-transformer", "results": "converged_modes_transformer"}}
PREPARE = ["--bpe-merges", "2000", "--max-len", "14", "--filter-eval"]
SYNTHETIC = ["--pairs", "4000", "--seed", "1"]
# the paper's IWSLT'14 figures (Deng et al. 2018, Table 1): test PPL, BLEU, prior entropy, K-max 5 PPL
PAPER = {"soft": (7.17, 32.77, 1.24, None), "marginal": (6.34, 33.29, 0.82, 6.90),
         "hard-enum": (7.37, 31.40, 0.05, None), "hard-sample": (7.38, 31.00, 0.07, None),
         "vae-enum": (6.08, 33.68, 0.54, 6.42), "vae-sample": (6.17, 33.30, 0.52, 6.51),
         "vae-gumbel": (6.51, 33.08, None, None), "vae-rws": (6.41, 32.96, None, None),
         "vae-dirichlet": (7.58, 30.05, 2.02, None)}


def jobs(args, results: dict) -> list[dict]:
    """Every job, in the order workers take them: the synthetic runs, the grid's first learning rate for
    every mode, the rest of the grid (the cheapest modes first, so that a stopped queue leaves the costly
    ones out), then the seeds. A mode's seeds become known once its whole grid has finished, at the
    grid's best learning rate."""
    def grid(lrs):
        return [{"name": f"{m}-lr{lr:g}-s1", "mode": m, "lr": lr, "seed": 1, "kind": "mt"} for lr in lrs
                for m in args.modes]

    found = [{"name": f"syn-{m}", "mode": m, "lr": 0.003, "seed": 1, "kind": "synthetic"} for m in args.modes]
    found += grid(LRS[:1])
    found += sorted(grid(LRS[1:]), key=lambda j: CHEAPEST_FIRST.index(j["mode"]) if j["mode"] in CHEAPEST_FIRST else 99)
    for mode in args.seeded:
        done = [results.get(f"{mode}-lr{lr:g}-s1") for lr in LRS]
        if all(done):
            best = min(done, key=lambda r: r["best_metric"])
            found += [{"name": f"{mode}-lr{best['lr']:g}-s{seed}", "mode": mode, "lr": best["lr"], "seed": seed,
                       "kind": "mt"} for seed in (2, 3)]
    return found


def unlocks_seeds(job: dict, args) -> bool:
    """Whether finishing ``job`` may add jobs: a grid run of a seeded mode."""
    return job["kind"] == "mt" and job["seed"] == 1 and job["mode"] in args.seeded


def load_results(work: Path) -> dict:
    out = {}
    for path in sorted((work / "results").glob("*.json")):
        out[path.stem] = json.loads(path.read_text())
    return out


def run(command: list[str], log: Path, threads: int) -> None:
    """``command`` on ``threads`` threads, its output appended to ``log``; raises CalledProcessError."""
    harness.run(command, log=log, threads=threads)


def prepare(work: Path, name: str, source: list[str], threads: int) -> Path:
    folder = work / name
    if not (folder / "meta.json").is_file():  # varattn prepare leaves the folder whole or absent
        run([sys.executable, "-m", "varattn", "prepare", *source, "--out", str(folder)], work / f"{name}.log", threads)
    return folder


def train_overrides(job: dict, data: Path, args) -> list[str]:
    lr = job["lr"]
    shared = [f"data.dir={data}", f"model.mode={job['mode']}", "train.progress=false", "train.device=cpu",
              f"train.seed={job['seed']}", f"train.lr={lr}", "train.lr_decay=0.5", "train.decay_from_epoch=2",
              f"train.max_seconds={args.max_seconds}", "train.clip_norm=5.0"]
    shared += [f"{k}={v}" for k, v in MODE_SETTINGS.get(job["mode"], {}).items()]
    shared += [f"train.epochs={args.epochs}", f"train.min_lr={lr / 8}"]
    shared += list(getattr(args, "set", []) or [])  # a variant's settings, on every job (e.g. model.input_feed=false)
    if getattr(args, "arch", "rnn") == "transformer":
        sizes = TRANSFORMER_SYNTHETIC if job["kind"] == "synthetic" else TRANSFORMER
        shared += [f"{k}={v}" for k, v in TRANSFORMER_SHARED.items()]
        shared += [f"transformer.{k}={v}" for k, v in sizes.items()]
        if job["kind"] == "synthetic":
            return shared
        return shared + ["data.max_tokens=400", "data.eval_max_tokens=4000"]
    if job["kind"] == "synthetic":
        return shared
    return shared + [f"model.{k}={v}" for k, v in MODEL.items()] + ["data.max_tokens=400", "data.eval_max_tokens=4000"]


def recipe(job: dict, args) -> Path:
    """The recipe a job's overrides apply to: the quick start's on the synthetic corpus, else the arch's."""
    if job["kind"] == "synthetic":
        return ROOT / "configs" / "quickstart.yaml"
    return ROOT / "configs" / "multi30k" / ("transformer.yaml" if args.arch == "transformer" else "rnn.yaml")


def do_job(job: dict, args, work: Path) -> dict:
    synthetic = job["kind"] == "synthetic"
    data = (prepare(work, "data-synthetic", ["synthetic", *SYNTHETIC], args.threads) if synthetic else
            prepare(work, "data-m30k", ["multi30k", "--from", str(args.shared), *PREPARE], args.threads))
    run_dir = work / "runs" / job["name"]
    log = work / "logs" / f"{job['name']}.log"
    resume = ["--resume"] if (run_dir / "checkpoint_last.json").is_file() else []
    started = time.perf_counter()
    run([sys.executable, "-m", "varattn", "train", str(recipe(job, args)), "--out", str(run_dir), *resume,
         *train_overrides(job, data, args)], log, args.threads)
    seconds = time.perf_counter() - started
    history = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    metric = "elbo_ppl" if job["mode"].startswith("vae-") else "ppl"
    best = min(history, key=lambda h: h.get(metric, h["ppl"]))
    result = {**job, "seconds": seconds, "history": history, "best_epoch": best["epoch"],
              "best_metric": best.get(metric, best["ppl"]), "valid": best}
    if synthetic:
        out = work / "align" / job["name"]
        run([sys.executable, "-m", "varattn", "align", str(run_dir), "--data", str(data), "--split", "test",
             "--out", str(out), "--no-translate", "--device", "cpu"], log, args.threads)
        result["align"] = json.loads((out / "summary.json").read_text()).get("scores", {})
    else:
        target = run_dir / "test.json"
        run([sys.executable, "-m", "varattn", "evaluate", str(run_dir), "--data", str(data), "--split", "test",
             "--kmax", "5", "--beam", "5", "--device", "cpu", "--json", str(target)], log, args.threads)
        result["test"] = json.loads(target.read_text())
    return result


def worker(args) -> None:
    work = Path(args.work)
    for sub in ("claims", "results", "runs", "logs", "align"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    while True:
        results = load_results(work)
        pending = [j for j in jobs(args, results) if j["name"] not in results]
        claimed = None
        for job in pending:
            try:
                (work / "claims" / job["name"]).mkdir()
            except FileExistsError:
                continue
            claimed = job
            break
        if claimed is None:  # every pending job is another worker's
            if not any(unlocks_seeds(j, args) for j in pending):
                return  # and none of them will add jobs
            time.sleep(20)
            continue
        print(f"{time.strftime('%H:%M:%S')} {claimed['name']}", flush=True)
        try:
            result = do_job(claimed, args, work)
        except subprocess.CalledProcessError as error:
            print(f"{claimed['name']} failed: {error} (log {work / 'logs' / (claimed['name'] + '.log')})", flush=True)
            continue
        write_text(work / "results" / f"{claimed['name']}.json", json.dumps(result, indent=1))


def release(args) -> None:
    work = Path(args.work)
    done = load_results(work)
    for claim in (work / "claims").iterdir():
        if claim.name not in done:
            claim.rmdir()
            print(f"released {claim.name}")


# ------------------------------------------------------------------------------------------- report

def spread(values: list[float], spec: str = ".2f") -> str:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "–"
    if len(values) == 1:
        return format(values[0], spec)
    return f"{statistics.mean(values):{spec}} ± {statistics.stdev(values):{spec}}"


def row_values(result: dict) -> dict:
    test = result.get("test", {})
    return {"ppl": test.get("ppl"), "kmax5": (test.get("kmax_ppl") or {}).get("5"),
            "elbo": test.get("elbo_ppl"), "kl": test.get("kl"), "entropy": test.get("entropy"),
            "bleu": test.get("bleu"), "valid": result["best_metric"], "epochs": len(result["history"]),
            "best_epoch": result["best_epoch"], "minutes": result["seconds"] / 60}


def report(args) -> None:
    work = Path(args.work)
    results = load_results(work)
    chosen, lines_after, grid_rows = {}, [], []
    for mode in args.modes:
        cells = [results.get(f"{mode}-lr{lr:g}-s1") for lr in LRS]
        done = [c for c in cells if c]
        if done:
            chosen[mode] = min(done, key=lambda r: r["best_metric"])["lr"]
        seeded = {r["lr"] for r in results.values() if r.get("kind") == "mt" and r["mode"] == mode and r["seed"] > 1}
        if seeded and chosen.get(mode) not in seeded:
            winner, chosen[mode] = chosen[mode], seeded.pop()
            lines_after.append(f"- {mode}: the grid's winner is lr {winner:g}, but its seeds ran at lr "
                               f"{chosen[mode]:g} (the best when they started); the table uses lr {chosen[mode]:g}.")
        grid_rows.append([mode, *("–" if c is None else f"{c['best_metric']:.2f} (ep {c['best_epoch']}/"
                                  f"{len(c['history'])}, {c['seconds'] / 60:.1f} min)" for c in cells),
                          fmt(chosen.get(mode), "g")])
    intro = ["One thread per run, up to two runs at a time.\n"]
    if args.arch == "transformer":
        intro = [transformer_intro(args, results)]
    lines = [*intro, *([args.note + "\n"] if args.note else []),
             "## The grid (seed 1): validation metric of the best epoch at each learning rate\n",
             table(["mode", *(f"lr {lr:g}" for lr in LRS), "chosen"], grid_rows)]
    summary, test_rows = {}, []
    for mode in args.modes:
        if mode not in chosen:
            continue
        runs = [results[n] for n in (f"{mode}-lr{chosen[mode]:g}-s{s}" for s in (1, 2, 3)) if n in results]
        values = [row_values(r) for r in runs]
        syn = results.get(f"syn-{mode}")
        links = syn["align"] if syn else {}
        aer = (links.get("prior") or links.get("attention") or {}).get("aer")
        summary[mode] = {"lr": chosen[mode], "runs": values, "aer": aer}
        test_rows.append([mode, len(runs), *(spread([v[key] for v in values], spec) for key, spec in
                                             (("ppl", ".2f"), ("kmax5", ".2f"), ("elbo", ".2f"), ("kl", ".3f"),
                                              ("entropy", ".2f"), ("bleu", ".2f"))),
                          fmt(aer, ".3f"), " / ".join(fmt(p) for p in PAPER[mode])])
    lines += lines_after + ["", "## Test, best checkpoint at the chosen learning rate (mean ± sd over seeds where 3)\n",
                            table(["mode", "seeds", "test PPL (exact)", "K-max 5 PPL", "ELBO PPL", "KL",
                                   "prior entropy", "BLEU (beam 5)", "synthetic AER",
                                   "paper PPL / BLEU / entropy / K-max 5"], test_rows, align="lrrrrrrrrl")]
    synthetic_rows = []
    for mode in args.modes:
        syn = results.get(f"syn-{mode}")
        if syn:
            links = syn["align"]
            synthetic_rows.append([mode, fmt((links.get("prior") or links.get("attention") or {}).get("aer"), ".3f"),
                                   fmt(links.get("posterior", {}).get("aer"), ".3f"), f"{syn['best_metric']:.2f}",
                                   f"{syn['valid']['entropy']:.2f}", len(syn["history"]),
                                   *([fmt(links.get("cross", {}).get("aer"), ".3f")] if args.arch == "transformer" else [])])
    cross = ["soft cross-attention (mean of layers and heads)"] if args.arch == "transformer" else []
    lines += ["", "## Synthetic corpus: AER of each distribution's argmax links (seed 1)\n",
              table(["mode", "prior (soft: attention)", "posterior q", "validation PPL", "prior entropy", "epochs",
                     *cross], synthetic_rows)]
    every = []
    for name, result in sorted(results.items()):
        if result.get("kind") == "mt":
            v = row_values(result)
            every.append([name, f"{result['lr']:g}", result["seed"], f"{v['best_epoch']} / {v['epochs']}",
                          f"{v['valid']:.2f}", fmt(v["ppl"]), fmt(v["bleu"]), fmt(v["entropy"]),
                          f"{v['minutes']:.1f}"])
    lines += ["", "## Every run\n",
              table(["run", "lr", "seed", "best epoch / epochs", "validation metric", "test PPL", "BLEU",
                     "prior entropy", "minutes"], every)]
    curves = [(m, results[f"{m}-lr{chosen[m]:g}-s1"]) for m in args.modes
              if m in chosen and f"{m}-lr{chosen[m]:g}-s1" in results]
    if curves:
        epochs = [[epoch + 1, *(f"{r['history'][epoch]['ppl']:.2f} / {r['history'][epoch]['entropy']:.2f}"
                                if epoch < len(r["history"]) else "" for _, r in curves)]
                  for epoch in range(max(len(r["history"]) for _, r in curves))]
        lines += ["", "## Curves (seed 1, chosen learning rate): validation exact PPL / prior entropy per epoch\n",
                  table(["epoch", *(m for m, _ in curves)], epochs, align="r" * (1 + len(curves)))]
    settings = "; ".join(f"{m}: " + ", ".join(f"{k}={v}" for k, v in kv.items()) for m, kv in MODE_SETTINGS.items())
    if args.arch == "transformer":
        settings += recipe_mode_blocks(recipe({"kind": "mt"}, args))
        lines += ["", HOW_TRANSFORMER.format(
            **protocol_flags(args),
            model=", ".join(f"{k}={v}" for k, v in {**TRANSFORMER_SHARED, **{f"transformer.{k}": v for k, v in
                                                                          TRANSFORMER.items()}}.items()),
            synthetic=", ".join(f"transformer.{k}={v}" for k, v in TRANSFORMER_SYNTHETIC.items()), settings=settings)]
    else:
        lines += ["", HOW.format(**protocol_flags(args), model=", ".join(f"{k} {v}" for k, v in MODEL.items()),
                                 settings=settings)]
    if args.set:
        lines += [f"Variant: every job of this table also ran with {', '.join(f'`{s}`' for s in args.set)}.\n"]
    text = "\n".join(lines) + "\n"
    write_results(Path(args.results), {"chosen": chosen, "table": summary, "results": results}, text,
                  command=command_line(__file__, args.argv), threads=args.threads)
    print(text)


def recipe_mode_blocks(path: Path) -> str:
    """A recipe's own ``modes:`` block as settings text (they apply to the Multi30k runs, not the synthetic ones)."""
    import yaml

    blocks = yaml.safe_load(path.read_text()).get("modes") or {}
    if not blocks:
        return ""
    return "; and from the recipe's `modes:` block (Multi30k runs only): " + "; ".join(
        f"{mode}: " + ", ".join(f"{section}.{k}={v}" for section, fields in kv.items() for k, v in fields.items())
        for mode, kv in blocks.items())


def transformer_intro(args, results: dict) -> str:
    """The Transformer table's opening paragraph: what it is, and which of its jobs have finished."""
    done = [n for n, r in sorted(results.items()) if r.get("kind") == "mt"]
    synthetic = [r["mode"] for n, r in sorted(results.items()) if r.get("kind") == "synthetic"]
    pending = [j["name"] for j in jobs(args, results) if j["name"] not in results]
    missing = [m for m in args.modes if not any(r.get("mode") == m for r in results.values())]
    state = (f"**Partial table**: {len(pending)} of its jobs have not finished ({', '.join(pending)}); "
             f"modes with no finished run: {', '.join(missing) or 'none'}. Seeds 2 and 3 of a seeded mode "
             "join the queue only once its whole grid has finished." if pending else
             "Every job of the queue has finished.")
    # the stopping rule ends a run only at lr/8: a run whose last epoch ran above it met the epoch cap or the budget
    capped = [n for n, r in sorted(results.items()) if r.get("kind") == "mt" and r["history"][-1]["lr"] > r["lr"] / 8 * 1.001]
    if capped:
        state += (f" Ended by the {args.epochs}-epoch cap or the wall budget, not the stopping rule (not converged): "
                  + ", ".join(f"{n} (best epoch {results[n]['best_epoch']}/{len(results[n]['history'])}, last lr "
                              f"{results[n]['history'][-1]['lr']:g})" for n in capped) + ".")
    return ("**The Transformer** (`--arch transformer`, issue 24): the LSTM table's protocol "
            "(`converged_modes.md`: the same data, batches, learning-rate grid, stopping rule, seeds and test "
            "metrics) with a pre-LN Transformer encoder-decoder and its latent head. Training runs in bf16 "
            "autocast on this CPU (`train.cpu_bf16=true`; its speed against float32 is "
            "`benchmarks/transformer_cpu_recipe.py`'s to measure); validation, "
            "the stopping rule's metric and every test figure are computed in float32. One thread per run.\n\n"
            f"Finished Multi30k runs: {', '.join(done) or 'none'}. Finished synthetic runs: "
            f"{', '.join(synthetic) or 'none'}. {state}\n")


def protocol_flags(args) -> dict[str, str]:
    """The flags that name this table's protocol (those that differ from the defaults), as the "How it was run"
    commands repeat them: ``flags`` for run and report, ``results`` for report alone."""
    defaults = ARCHS[args.arch]
    flags = []
    if args.arch != "rnn":
        flags += ["--arch", args.arch]
    if Path(args.work).resolve() != (ROOT / "runs" / defaults["work"]).resolve():
        flags += ["--work", rel(args.work)]
    if args.modes != MODES:
        flags += ["--modes", *args.modes]
    if args.seeded != SEEDED:
        flags += ["--seeded", *args.seeded]
    if args.set:
        flags += ["--set", *args.set]
    results = [] if Path(args.results).resolve() == (RESULTS / defaults["results"]).resolve() else \
        ["--results", rel(args.results)]
    return {"flags": " " + shlex.join(flags) if flags else "", "results": " " + shlex.join(results) if results else ""}


HOW = """## How it was run

    python benchmarks/converged_modes.py run{flags} &   # two workers, one thread each
    python benchmarks/converged_modes.py run{flags} &
    python benchmarks/converged_modes.py report{flags}{results}

Data: `varattn prepare multi30k --from ../shared/data/multi30k --bpe-merges 2000 --max-len 14 --filter-eval`
(Multi30k De-En: 8,691 training pairs, 301 validation, 323 test; pairs of at most 14 BPE tokens).
Model: the recipe `configs/multi30k/rnn.yaml` with `model.mode=MODE` and {model}. Training: batches of 400 padded tokens
(547 updates an epoch), Adam, gradient norm 5, the learning rate halved after every epoch (from the
second) whose validation metric is not the best so far, training over at the first such epoch at lr/8, at
most 20 epochs; the best checkpoint by the validation metric (exact PPL; ELBO PPL with q for `vae-*`).
Mode settings: {settings}; every other setting is the recipe's. Test: exact PPL under the prior, K-max 5 PPL,
ELBO PPL, KL and prior entropy from `varattn evaluate --kmax 5 --beam 5` (BLEU: beam 5 over the exact
marginal, α = 1, eos_norm = 3, tokenised lowercased BLEU). Synthetic: `varattn prepare synthetic --pairs 4000
--seed 1`, `configs/quickstart.yaml` sizes, lr 3e-3, the same stopping rule; `varattn align` on its 300-odd
test pairs against the gold links.
"""


HOW_TRANSFORMER = """## How it was run

    python benchmarks/converged_modes.py run{flags} &   # workers, one thread each
    python benchmarks/converged_modes.py report{flags}{results}

Data: `varattn prepare multi30k --from ../shared/data/multi30k --bpe-merges 2000 --max-len 14 --filter-eval`
(Multi30k De-En: 8,691 training pairs, 301 validation, 323 test; pairs of at most 14 BPE tokens), as for the LSTM.
Model: the recipe `configs/multi30k/transformer.yaml` with `model.mode=MODE` and {model}
(the sizes of `benchmarks/transformer_multi30k.py`). Training as for the LSTM: batches of 400 padded tokens
(547 updates an epoch), Adam (beta2 0.999, the LSTM's; the recipe's 0.98 is overridden), gradient norm 5, the
learning rate halved after every epoch (from the second) whose validation metric is not the best so far,
training over at the first such epoch at lr/8, at most 20 epochs and the run's wall budget (`--max-seconds`);
the best checkpoint by the validation metric (exact PPL; ELBO PPL with q for `vae-*`). Mode settings:
{settings}; every other setting is the recipe's. Test: exact PPL under the prior, K-max 5 PPL, ELBO PPL, KL and
prior entropy from `varattn evaluate --kmax 5 --beam 5` (BLEU: beam 5 over the exact marginal, α = 1,
eos_norm = 3, tokenised lowercased BLEU). Synthetic: `varattn prepare synthetic --pairs 4000 --seed 1`,
`configs/quickstart.yaml` with model.arch=transformer, {synthetic} (the sizes of
`benchmarks/transformer_alignment.py`), lr 3e-3, the same stopping rule, bf16 training; `varattn align` on its
300-odd test pairs against the gold links (the latent head's prior; `soft`: the latent head's soft attention).
The paper's column is its LSTM's (IWSLT'14), as in the LSTM table.
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["run", "report", "release"])
    parser.add_argument("--arch", choices=sorted(ARCHS), default="rnn",
                        help="rnn: the paper's LSTM; transformer: the same protocol with the Transformer")
    parser.add_argument("--work", default=None, help="default runs/converged (rnn), runs/converged-transformer")
    parser.add_argument("--shared", default=str(SHARED / "multi30k"))
    parser.add_argument("--modes", nargs="+", default=MODES)
    parser.add_argument("--seeded", nargs="*", default=SEEDED, help="modes run with seeds 2 and 3 too")
    parser.add_argument("--epochs", type=int, default=20, help="most epochs a run may take")
    parser.add_argument("--max-seconds", type=float, default=1200.0, help="wall budget a run may take")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--results", default=None, help="default benchmarks/results/converged_modes "
                        "(rnn), converged_modes_transformer")
    parser.add_argument("--set", nargs="+", default=[], metavar="SECTION.FIELD=VALUE",
                        help="settings added to every job's training (a variant of the protocol, e.g. "
                        "model.input_feed=false); give the variant its own --work and --results")
    parser.add_argument("--note", default="", help="report: a line printed under the machine (e.g. code versions)")
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    args.work = args.work or str(ROOT / "runs" / ARCHS[args.arch]["work"])
    args.results = args.results or str(RESULTS / ARCHS[args.arch]["results"])
    {"run": worker, "report": report, "release": release}[args.action](args)


if __name__ == "__main__":
    main()
