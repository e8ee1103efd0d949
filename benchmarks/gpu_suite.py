"""The stages of ``benchmarks/gpu_suite.sh`` that are not ``speed.py`` (issue 16).

Each stage is one process with its own time limit (set by the shell script); each writes a JSON fragment
into the work folder as soon as it has something, so a stage that fails or runs out of time loses only
itself, and ``report`` gathers whatever is there into ``$OUT/gpu_suite.{json,md}``.

    python benchmarks/gpu_suite.py prepare --data RAW_OR_PREPARED --work W [--tiny]
    python benchmarks/gpu_suite.py mode --mode vae-enum --work W --device cuda --train-seconds 40 \\
        --decode-seconds 15 [--tiny]
    python benchmarks/gpu_suite.py report --work W --out OUT

``mode`` trains a model on the prepared Multi30k folder for a fixed wall budget (``train.max_seconds``;
bf16 autocast on CUDA; the paper's sizes, or toy sizes with ``--tiny``), then evaluates its best
checkpoint on the test split — exact PPL under the prior, ELBO PPL and KL with q, prior entropy, K-max 1/5
PPL — and decodes the test split with the Multi30k recipe's beam search (beam 10, α = 1, eos_norm = 3)
over the exact marginal (``decode.kmax = 0``), in chunks until ``--decode-seconds`` have passed: sentences
per second over the chunks decoded, BLEU on those sentences (all of the test split when time allowed).
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import harness
from harness import ROOT, fmt, write_json, write_results

# The paper's sizes (docs/design.md §3; ModelConfig's defaults), written out so the record says what ran.
PAPER = {"emb_size": 512, "enc_hidden": 512, "enc_layers": 2, "dec_hidden": 768, "dec_layers": 2,
         "attn_size": 512, "inf_hidden": 512, "inf_layers": 2, "dropout": 0.3}
TINY = {"emb_size": 32, "enc_hidden": 32, "enc_layers": 1, "dec_hidden": 64, "dec_layers": 1,
        "attn_size": 32, "inf_hidden": 32, "inf_layers": 1, "dropout": 0.1}
DECODE = {"beam": 10, "alpha": 1.0, "eos_norm": 3.0, "kmax": 0}  # configs/multi30k/rnn.yaml, exact marginal


def machine() -> dict:
    """The harness's record of the machine, with what a GPU run also wants known: bf16 support, the
    driver and clocks (nvidia-smi), sacrebleu's version and the full commit hash."""
    import torch

    info = harness.machine()
    info["cuda_available"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        info["bf16_supported"] = torch.cuda.is_bf16_supported()
        try:
            info["nvidia_smi"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit",
                 "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        import sacrebleu
        info["sacrebleu"] = sacrebleu.__version__
    except ImportError:
        pass
    try:
        info["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                            text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return info


# ----------------------------------------------------------------------------- prepare


def prepare(args) -> None:
    """A prepared folder from ``--data``: used as it is when it holds ``meta.json``, else prepared from the
    raw Multi30k folder with the recipe's settings (10k joint BPE merges; toy: 1k merges, pairs <= 12)."""
    from varattn.data.corpora.recipes import prepare as prepare_corpus

    work, data = Path(args.work), Path(args.data)
    started = time.perf_counter()
    if (data / "meta.json").is_file():
        folder, how = data, "given prepared folder"
    else:
        folder = work / "multi30k"
        options = {"bpe_merges": 1000, "max_len": 12} if args.tiny else {"bpe_merges": 10000}
        if not (folder / "meta.json").is_file():
            prepare_corpus("multi30k", str(folder), from_dir=str(data), progress=False, **options)
        how = f"varattn prepare multi30k --from {data} " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in options.items())
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    splits = {name: split.get("pairs") for name, split in meta.get("splits", {}).items()}
    write_json(work / "prepare.json", {"folder": str(folder), "how": how, "splits": splits,
                                       "seconds": time.perf_counter() - started})
    print(f"prepared {folder}: {splits} ({time.perf_counter() - started:.1f} s)", flush=True)


# ----------------------------------------------------------------------------- one mode: train, evaluate, decode


def train_mode(args, folder: Path, run_dir: Path, record: dict, fragment: Path) -> None:
    import torch

    from varattn import config as config_lib
    from varattn.training.trainer import Trainer

    sizes = TINY if args.tiny else PAPER
    overrides = [f"data.dir={folder}", f"model.mode={args.mode}", f"data.max_tokens={args.batch_tokens}",
                 f"data.eval_max_tokens={args.eval_tokens}", f"train.max_seconds={args.train_seconds}",
                 "train.epochs=1000", "train.progress=false", f"train.device={args.device}", "train.bf16=true",
                 f"train.lr={args.lr}", "train.seed=1"]
    overrides += [f"model.{k}={v}" for k, v in sizes.items()]
    if args.arch:
        overrides.append(f"model.arch={args.arch}")
    config = config_lib.load(ROOT / "configs" / "multi30k" / "rnn.yaml", overrides)
    trainer = Trainer(config, run_dir)
    counted = {"tokens": 0, "validation_s": 0.0}
    loss, validate = trainer.task.loss, trainer.validate

    def counting_loss(*a, **k):
        value, stats = loss(*a, **k)
        counted["tokens"] += int(stats.get("tokens", 0))
        return value, stats

    def timed_validate():
        start = time.perf_counter()
        try:
            return validate()
        finally:
            counted["validation_s"] += time.perf_counter() - start

    trainer.task.loss, trainer.validate = counting_loss, timed_validate
    params = sum(p.numel() for p in trainer.model.parameters())
    print(f"[{args.mode}] training {params / 1e6:.1f} M parameters for {args.train_seconds:.0f} s "
          f"(batch {args.batch_tokens} tokens, {config.train.device})", flush=True)
    summary = trainer.run()
    train_s = summary["seconds"] - counted["validation_s"]
    record["train"] = {
        "parameters": params, "batch_tokens": args.batch_tokens, "lr": args.lr, "budget_s": args.train_seconds,
        "steps": summary["steps"], "epochs_done": summary["epochs_done"], "seconds": summary["seconds"],
        "stopped": summary["stopped"],
        "validation_seconds": counted["validation_s"], "target_tokens": counted["tokens"],
        "target_tokens_per_s": counted["tokens"] / train_s if train_s > 0 else None,
        "best": summary["best"], "last_validation": summary["last"], "history": trainer.progress.history,
        "peak_gpu_memory_gib": (torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available()
                                and args.device.startswith("cuda") else None),
        "sizes": sizes, "dtype": "bf16 autocast" if args.device.startswith("cuda") else "float32"}
    write_json(fragment, record)
    print(f"[{args.mode}] {summary['steps']} steps, {record['train']['target_tokens_per_s'] or 0:.0f} target tok/s, "
          f"best {summary['best']}", flush=True)


def evaluate_mode(args, folder: Path, run_dir: Path, record: dict, fragment: Path) -> None:
    import sacrebleu
    import torch

    from varattn.config import DecodeConfig
    from varattn.data.text.prepared import load_prepared
    from varattn.decoding.translate import decode_ids
    from varattn.tasks.translation_scores import score_split
    from varattn.training.runs import load_run

    device = torch.device(args.device)
    run = load_run(run_dir, device)
    data = load_prepared(folder)
    split = data.split("test")
    started = time.perf_counter()
    scores = score_split(run.model, split, device, max_tokens=args.eval_tokens, kmax=(1, 5),
                         samples=run.config.train.eval_samples, seed=1, bf16=True)
    scores["seconds"] = time.perf_counter() - started
    record["test_scores"] = scores
    write_json(fragment, record)
    print(f"[{args.mode}] test scores: ppl {scores['ppl']:.2f} elbo_ppl {scores.get('elbo_ppl')} kl {scores.get('kl')} "
          f"entropy {scores['entropy']:.3f} ({scores['seconds']:.1f} s)", flush=True)

    decode = DecodeConfig(**DECODE, max_len_a=run.config.decode.max_len_a, max_len_b=run.config.decode.max_len_b,
                          batch_tokens=args.decode_batch_tokens)
    order = list(range(len(split)))
    hypotheses: dict[int, list[int]] = {}
    seconds, chunk = 0.0, args.decode_chunk
    for first in range(0, len(order), chunk):
        if seconds >= args.decode_seconds:
            break
        indices = order[first:first + chunk]
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        found = decode_ids(run, [split.src(i).tolist() for i in indices], decode)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - start
        hypotheses.update({i: h.tokens for i, h in zip(indices, found)})
        print(f"[{args.mode}] decoded {len(hypotheses)}/{len(split)} sentences in {seconds:.1f} s", flush=True)
    done = sorted(hypotheses)
    pipeline = run.data.pipeline
    text = [pipeline.decode_target(run.data.tgt_vocab.decode(hypotheses[i])) for i in done]
    references = split.references()
    bleu = sacrebleu.metrics.BLEU(tokenize="none")
    score = bleu.corpus_score(text, [[references[i] for i in done]]) if done else None
    record["decode"] = {
        "settings": decode.__dict__, "sentences": len(done), "of": len(split), "seconds": seconds,
        "sentences_per_s": len(done) / seconds if seconds else None,
        "mean_output_tokens": sum(len(hypotheses[i]) for i in done) / max(len(done), 1),
        "bleu": score.score if score else None, "bleu_signature": str(bleu.get_signature()),
        "bleu_on": "the whole test split" if len(done) == len(split) else f"the first {len(done)} test sentences",
        "examples": [{"reference": references[i], "hypothesis": t} for i, t in zip(done[:3], text[:3])]}
    write_json(fragment, record)
    print(f"[{args.mode}] beam {DECODE['beam']} exact marginal: {record['decode']['sentences_per_s'] or 0:.2f} "
          f"sentences/s, BLEU {record['decode']['bleu']} on {record['decode']['bleu_on']}", flush=True)


def mode(args) -> None:
    import torch

    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="  %(message)s", stream=sys.stdout)
    work = Path(args.work)
    folder = Path(json.loads((work / "prepare.json").read_text(encoding="utf-8"))["folder"])
    fragment = work / f"mode_{args.mode}.json"
    run_dir = work / "runs" / args.mode
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    record = {"mode": args.mode, "arch": args.arch or "rnn"}
    write_json(fragment, record)
    try:
        train_mode(args, folder, run_dir, record, fragment)
        evaluate_mode(args, folder, run_dir, record, fragment)
    except Exception as error:  # recorded, then raised: the shell script notes the status and goes on
        record["error"] = f"{type(error).__name__}: {error}"
        write_json(fragment, record)
        raise


# ----------------------------------------------------------------------------- report


def report(args) -> None:
    work, out = Path(args.work), Path(args.out)
    stages = []
    if (work / "stages.jsonl").is_file():
        stages = [json.loads(line) for line in (work / "stages.jsonl").read_text().splitlines() if line.strip()]
    load = lambda path: json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None  # noqa: E731
    modes = [load(path) for path in sorted(work.glob("mode_*.json"))]
    order = {m: i for i, m in enumerate(["soft", "marginal", "vae-enum"])}
    modes.sort(key=lambda r: order.get(r["mode"], 99))
    speed = load(out / "speed.json")
    transformer = load(out / "speed_transformer.json")
    no_input_feed = load(work / "speed_no_input_feed.json")  # in WORK: $OUT holds at most 8 files
    graphed = load(work / "speed_graphed.json")
    record = {"what": "benchmarks/gpu_suite.sh: speed of every mode, fixed-budget training on Multi30k, "
                      "evaluation and exact-marginal beam decoding",
              "command": args.command_line, "machine": machine(),
              "stages": stages, "prepare": load(work / "prepare.json"), "modes": modes,
              "speed_summary": speed_summary(speed), "no_input_feed_speed_summary": speed_summary(no_input_feed),
              "graphed_speed_summary": speed_summary(graphed),
              "transformer_speed_summary": speed_summary(transformer)}
    # gpu_suite.{json,md}, atomically; the record keeps its own command and machine, the stamp adds the
    # commit (+dirty) and the date, and the markdown ends with them
    write_results(out / "gpu_suite", record, markdown(record))
    print((out / "gpu_suite.md").read_text(encoding="utf-8"), flush=True)


def speed_summary(speed: dict | None) -> dict | None:
    if not speed:
        return None
    return {"largest_vae_enum_batch_tokens": speed.get("largest_vae_enum_batch_tokens"),
            "naive_batch_tokens": speed.get("naive_batch_tokens"), "dtype": speed.get("dtype"),
            "matmul_flop_per_s": speed.get("matmul", {}).get("flop_per_s"),
            "rows": [{k: r.get(k) for k in ("mode", "path", "tokens_per_s", "vs_soft", "vs_naive", "peak_bytes",
                                            "enum_fraction_of_peak")} for r in speed.get("rows", [])]}


def markdown(record: dict) -> str:
    info = record["machine"]
    where = info.get("gpu") or info.get("cpu")
    lines = [f"# GPU suite ({where})", "",
             f"`{record['command']}`", "",
             f"Machine: {where}" + (f" ({info.get('gpu_memory_gib')} GiB, CUDA {info.get('cuda')})" if info.get("gpu") else "")
             + f"; CPU {info.get('cpu')} × {info.get('cpu_cores')}; torch {info.get('torch')}; "
               f"commit {info.get('git_commit')}.", "",
             "## Stages", "", "| stage | status | seconds | limit (s) |", "| --- | --- | ---: | ---: |"]
    for stage in record["stages"]:
        lines.append(f"| {stage['stage']} | {stage['status']} | {stage['seconds']:.0f} | {stage['limit']} |")
    for title, summary in (("Training speed (benchmarks/speed.py)", record["speed_summary"]),
                           ("Training speed without input feeding (model.input_feed=false)",
                            record.get("no_input_feed_speed_summary")),
                           ("Training speed, input feeding from CUDA graphs (model.cuda_graph=true; eager on a CPU)",
                            record.get("graphed_speed_summary")),
                           ("Transformer speed", record["transformer_speed_summary"])):
        if not summary:
            continue
        lines += ["", f"## {title}", "", f"{summary['dtype']}; matmul peak "
                  f"{fmt(summary['matmul_flop_per_s'] and summary['matmul_flop_per_s'] / 1e12, '.1f')} TFLOP/s; "
                  f"naive batch {summary['naive_batch_tokens']} tokens; largest vae-enum batch "
                  f"{summary['largest_vae_enum_batch_tokens']} tokens.", "",
                  "| mode | path | target tok/s | × soft | × naive | peak GiB | enum % of peak |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        for r in summary["rows"]:
            lines.append(f"| {r['mode']} | {r['path']} | {fmt(r['tokens_per_s'], '.0f')} | {fmt(r['vs_soft'])} | "
                         f"{fmt(r['vs_naive'], '.1f')} | {fmt(r['peak_bytes'] and r['peak_bytes'] / 2**30)} | "
                         f"{fmt(r['enum_fraction_of_peak'] and 100 * r['enum_fraction_of_peak'], '.1f')} |")
    prep = record.get("prepare") or {}
    lines += ["", "## Multi30k, fixed wall budget per mode", "",
              f"Data: {prep.get('how')} ({prep.get('splits')}). Decoding: beam {DECODE['beam']}, α {DECODE['alpha']}, "
              f"eos_norm {DECODE['eos_norm']}, exact marginal; BLEU tokenize=none on BPE-removed lowercased "
              "tokenised text.", "",
              "| mode | budget (s) | steps | epochs | train tok/s | peak GiB | test PPL | ELBO PPL | KL | entropy "
              "| K-max 1 / 5 PPL | decoded | sent/s | BLEU | error |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- |"]
    for m in record["modes"]:
        t, s, d = m.get("train") or {}, m.get("test_scores") or {}, m.get("decode") or {}
        kmax = s.get("kmax_ppl") or {}
        lines.append(
            f"| {m['mode']} | {fmt(t.get('budget_s'), '.0f')} | {t.get('steps', '–')} | {t.get('epochs_done', '–')} | "
            f"{fmt(t.get('target_tokens_per_s'), '.0f')} | {fmt(t.get('peak_gpu_memory_gib'))} | {fmt(s.get('ppl'))} | "
            f"{fmt(s.get('elbo_ppl'))} | {fmt(s.get('kl'), '.3f')} | {fmt(s.get('entropy'), '.3f')} | "
            f"{fmt(kmax.get('1'))} / {fmt(kmax.get('5'))} | {d.get('sentences', '–')}/{d.get('of', '–')} | "
            f"{fmt(d.get('sentences_per_s'))} | {fmt(d.get('bleu'))} | {m.get('error', '')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="stage", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--data", required=True, help="raw Multi30k folder (tok/, raw/) or a prepared folder")
    p.add_argument("--work", required=True)
    p.add_argument("--tiny", action="store_true")
    p = sub.add_parser("mode")
    p.add_argument("--mode", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--arch", default="", help="model.arch override (default: the config's)")
    p.add_argument("--train-seconds", type=float, default=40.0)
    p.add_argument("--batch-tokens", type=int, default=8192, help="padded source + target tokens per batch")
    p.add_argument("--eval-tokens", type=int, default=16384)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--decode-seconds", type=float, default=15.0)
    p.add_argument("--decode-chunk", type=int, default=100, help="test sentences per timed decoding call")
    p.add_argument("--decode-batch-tokens", type=int, default=4000)
    p.add_argument("--threads", type=int, default=1, help="CPU threads")
    p = sub.add_parser("report")
    p.add_argument("--work", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--command-line", default="benchmarks/gpu_suite.sh")
    args = parser.parse_args(argv)
    {"prepare": prepare, "mode": mode, "report": report}[args.stage](args)


if __name__ == "__main__":
    main()
