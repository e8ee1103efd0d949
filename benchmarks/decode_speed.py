"""Beam-search decoding speed (issue 5): sentences per second of beam-10 decoding of the first N lines of
IWSLT'14 De-En ``test.de.bpe`` with a paper-size model (docs/design.md §3: embeddings 512, 2-layer BiLSTM encoder of
512 per direction, 2-layer LSTM decoder of 768, attention 512), for the three next-word distributions:
the exact marginal ``log Σ_s p(s) p(y|s)``, K-max (K = 5), and soft attention.

The weights are random (uniform ±0.1, the model's own initialisation): speed does not depend on what was
learnt, except through output lengths — a random model rarely ends early, so most hypotheses run to the
maximum length ``1.5 |x| + 10`` and the figures are close to a worst case; the mean output length is
recorded. The vocabularies come from the IWSLT validation BPE files (``prepare files`` with the
validation pairs as training data, no further BPE). Decoding uses the paper's settings (beam 10, α = 1,
eos_norm = 3) and ``varattn.decoding.translate.decode_nbest``, i.e. the batching of ``varattn translate``.

    python benchmarks/decode_speed.py --lines 500            # CPU, and CUDA when there is a GPU
    python benchmarks/decode_speed.py --lines 100 --exact-lines 20 --devices cpu

With ``--runs RUN [RUN ...] --data PREPARED``, trained runs (their best checkpoints) decode a prepared split
instead (``--split``, default test): for a latent run the exact marginal and K-max 1 and 5, for a soft run
its expected context, each at every beam of ``--beams`` (default 1 5 10), with the recipe's α and eos_norm
(``--alpha``, ``--eos-norm``); it writes ``decode_speed_runs.{json,md}`` (``--name`` for another stem):

    python benchmarks/decode_speed.py --runs runs/soft runs/vae-enum --data runs/data --threads 2

Writes ``benchmarks/results/decode_speed.{json,md}`` next to this script (``--out`` for another folder).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from harness import RESULTS, command_line, cpu_model, table, write_results
from varattn.config import DecodeConfig, ModelConfig
from varattn.data.corpora.recipes import prepare
from varattn.data.text.prepared import load_prepared
from varattn.decoding.translate import decode_nbest
from varattn.models.seq2seq import Seq2Seq
from workloads import IWSLT

PAPER = dict(emb_size=512, enc_hidden=512, enc_layers=2, dec_hidden=768, dec_layers=2, attn_size=512,
             dropout=0.3, init_range=0.1, inf_hidden=512, inf_layers=2)
VARIANTS = (("exact marginal", "marginal", 0), ("K-max 5", "marginal", 5), ("soft", "soft", 0))


def vocabularies(iwslt: Path, work: Path):
    out = work / "iwslt-vocab"
    if not (out / "meta.json").is_file():
        prepare("files", str(out), train_src=str(iwslt / "valid.de.bpe"), train_tgt=str(iwslt / "valid.en.bpe"),
                valid_src=str(iwslt / "test.de.bpe"), valid_tgt=str(iwslt / "test.en.bpe"), src_lang="de",
                tgt_lang="en", tokenize=False, lowercase=False, bpe_merges=0, progress=False)
    return load_prepared(out)


def machine(device: torch.device) -> str:
    """What a row ran on: the GPU, or the CPU and its threads."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()}, {torch.get_num_threads()} threads"


def measure(name: str, mode: str, kmax: int, sources: list[list[int]], sizes: tuple[int, int],
            device: torch.device, batch_tokens: int, seed: int) -> dict:
    torch.manual_seed(seed)
    model = Seq2Seq(ModelConfig(mode=mode, **PAPER), *sizes).to(device).eval()
    run = SimpleNamespace(model=model, device=device)
    decode = DecodeConfig(beam=10, alpha=1.0, eos_norm=3.0, max_len_a=1.5, max_len_b=10, kmax=kmax,
                          batch_tokens=batch_tokens)
    decode_nbest(run, sources[:2], decode)  # warm-up (allocator, kernels)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    found = decode_nbest(run, sources, decode)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    out_tokens = sum(len(n[0].tokens) + 1 for n in found)
    return {"variant": name, "mode": mode, "kmax": kmax, "device": str(device), "machine": machine(device),
            "load_average_1min": os.getloadavg()[0],
            "sentences": len(sources), "seconds": seconds, "sentences_per_s": len(sources) / seconds,
            "source_tokens": sum(map(len, sources)), "output_tokens": out_tokens,
            "mean_output_length": out_tokens / len(sources), "batch_tokens": batch_tokens}


def measure_run(path: str, data_dir: str, split_name: str, beams: list[int], alpha: float, eos_norm: float,
                batch_tokens: int) -> list[dict]:
    """Sentences/s of a trained run decoding a prepared split, per beam and next-word distribution."""
    from varattn.data.text.prepared import load_prepared
    from varattn.latent import get_mode
    from varattn.training.runs import load_run

    device = torch.device("cpu")
    run = load_run(path, device)
    split = load_prepared(data_dir).split(split_name)
    sources = [split.src(i).tolist() for i in range(len(split))]
    mode = run.config.model.mode
    variants = [("soft", 0)] if get_mode(mode).soft_context else [("exact", 0), ("K-max 1", 1), ("K-max 5", 5)]
    rows = []
    for beam in beams:
        for name, kmax in variants:
            decode = DecodeConfig(beam=beam, alpha=alpha, eos_norm=eos_norm, max_len_a=run.config.decode.max_len_a,
                                  max_len_b=run.config.decode.max_len_b, kmax=kmax, batch_tokens=batch_tokens)
            started = time.perf_counter()
            found = decode_nbest(run, sources, decode)
            seconds = time.perf_counter() - started
            out_tokens = sum(len(n[0].tokens) + 1 for n in found)
            rows.append({"run": str(path), "mode": mode, "variant": name, "beam": beam, "kmax": kmax,
                         "machine": machine(device), "load_average_1min": os.getloadavg()[0],
                         "sentences": len(sources), "seconds": seconds, "sentences_per_s": len(sources) / seconds,
                         "mean_output_length": out_tokens / len(sources), "batch_tokens": batch_tokens})
            print(f"{mode:<10} {name:<8} beam {beam:>2}: {len(sources)} sentences {seconds:7.1f} s "
                  f"{len(sources) / seconds:8.1f} sentences/s", flush=True)
    return rows


def runs_main(args) -> None:
    rows = [row for path in args.runs for row in measure_run(path, args.data, args.split, args.beams, args.alpha,
                                                              args.eos_norm, args.batch_tokens)]
    lines = table(["mode", "next-word distribution", "beam", "sentences", "seconds", "sentences/s",
                   "mean output length (incl. </s>)", "load (1 min)"],
                  [[r["mode"], r["variant"], r["beam"], r["sentences"], f"{r['seconds']:.1f}",
                    f"{r['sentences_per_s']:.1f}", f"{r['mean_output_length']:.1f}",
                    f"{r['load_average_1min']:.1f}"] for r in rows], align="llrrrrrr")
    record = {"what": "decoding speed of trained runs on a prepared split", "split": args.split, "data": args.data,
              "alpha": args.alpha, "eos_norm": args.eos_norm, "threads": torch.get_num_threads(), "results": rows}
    header = (f"# Decoding speed of trained runs\n\n"
              f"Split {args.split} of {args.data}; α = {args.alpha}, eos_norm = {args.eos_norm}; "
              f"{torch.get_num_threads()} threads, torch {torch.__version__}.\n\n")
    write_results(Path(args.out) / args.name, record, header + lines, command=command_line(__file__))
    print(lines)


def rows_table(rows: list[dict]) -> str:
    return table(["device", "variant", "sentences", "seconds", "sentences/s", "mean output length (incl. </s>)",
                  "load (1 min)"],
                 [[r["machine"], r["variant"], r["sentences"], f"{r['seconds']:.1f}", f"{r['sentences_per_s']:.2f}",
                   f"{r['mean_output_length']:.1f}", f"{r['load_average_1min']:.1f}"] for r in rows], align="llrrrrr")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=500, help="first N lines of test.de.bpe")
    parser.add_argument("--exact-lines", type=int, default=None,
                        help="fewer lines for the exact marginal on CPU (it costs |x| output layers per row)")
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when available")
    parser.add_argument("--threads", type=int, default=None, help="CPU intra-op threads (default: torch's)")
    parser.add_argument("--batch-tokens", type=int, default=4000, help="padded source tokens per batch")
    parser.add_argument("--iwslt", default=str(IWSLT), help="folder with {valid,test}.{de,en}.bpe")
    parser.add_argument("--work", default=None, help="folder for the vocabularies (default: a temporary one)")
    parser.add_argument("--out", default=str(RESULTS), help="folder for decode_speed.{json,md}")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", nargs="+", default=None, help="trained runs to time instead of random models")
    parser.add_argument("--data", default=None, help="with --runs: the prepared folder to decode")
    parser.add_argument("--split", default="test")
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--eos-norm", type=float, default=3.0)
    parser.add_argument("--name", default="decode_speed_runs", help="with --runs: the results file stem in --out")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.runs:
        if not args.data:
            parser.error("--runs needs --data PREPARED")
        runs_main(args)
        return
    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    iwslt = Path(args.iwslt)
    with tempfile.TemporaryDirectory() as scratch:
        data = vocabularies(iwslt, Path(args.work) if args.work else Path(scratch))
        lines = (iwslt / "test.de.bpe").read_text(encoding="utf-8").splitlines()[: args.lines]
        sources = [data.src_vocab.encode(line.split()) for line in lines]
        sizes = (len(data.src_vocab), len(data.tgt_vocab))
        rows = []
        for device in map(torch.device, devices):
            for name, mode, kmax in VARIANTS:
                count = len(sources)
                if name == "exact marginal" and device.type == "cpu" and args.exact_lines:
                    count = min(count, args.exact_lines)
                row = measure(name, mode, kmax, sources[:count], sizes, device, args.batch_tokens, args.seed)
                print(f"{row['machine']:<40} {name:<15} {row['sentences']:>4} sentences "
                      f"{row['seconds']:8.1f} s {row['sentences_per_s']:8.2f} sentences/s", flush=True)
                rows.append(row)
    record = {"what": "beam-10 decoding speed, paper-size model with random weights, IWSLT'14 test.de.bpe",
              "settings": {"beam": 10, "alpha": 1.0, "eos_norm": 3.0, "max_len": "1.5 |x| + 10",
                           "lines": args.lines, "exact_lines_cpu": args.exact_lines, "model": PAPER,
                           "vocab": {"src": sizes[0], "tgt": sizes[1]}},
              "results": rows}
    header = (f"# Beam-search decoding speed\n\nBeam 10, α = 1, eos_norm = 3, maximum length 1.5 |x| + 10; "
              f"paper-size model (emb 512, encoder 2x512 BiLSTM, decoder 2x768, attention 512) with random "
              f"weights; vocabularies {sizes[0]} (de) / {sizes[1]} (en) from the IWSLT'14 validation BPE files; "
              f"the first {args.lines} lines of IWSLT'14 test.de.bpe"
              + (f" ({args.exact_lines} for the exact marginal on CPU)" if args.exact_lines else "")
              + f". torch {torch.__version__}. The load column is the machine's 1-minute load average after each "
              "run (other jobs shared the CPU).\n\n")
    cuda = "" if any(r["device"].startswith("cuda") for r in rows) else "\nNo CUDA device was available for this run.\n"
    write_results(Path(args.out) / "decode_speed", record, header + rows_table(rows) + "\n" + cuda,
                  command=command_line(__file__))
    print(rows_table(rows))


if __name__ == "__main__":
    main()
