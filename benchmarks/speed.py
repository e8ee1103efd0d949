"""Training speed and memory of every latent mode (issue 7).

For each mode: training target tokens per second (forward, backward, gradient clipping, Adam step — what
``varattn train`` does per batch) and peak memory, with the device, dtype and batch size in tokens; the
exact enumeration's FLOP count ``2·B·T·S·O·V`` forward (×3 with backward; padded cells, output size O,
target vocabulary V) against the device's peak measured in the same run by a large matrix product (bf16
on CUDA, float32 on CPU) — the achieved fraction, both for the whole training step and for
``enumerate()`` + backward timed alone; each latent mode as a ratio to ``soft`` measured in the same run
(the modes take turns step by step on the same batches, so a busy machine slows them alike; rates are
medians over the timed steps, ratios are ratios of those medians, and the JSON also has the medians of
the per-step ratios on the same batch); and the
enumerating modes against a *naive* reference path written here: everything materialised in float32 as
the 2018 code did — the ``[B, T, S, H+M]`` concatenation ``[h_t; x_s]``, ``W_o`` applied to it, a full
``[B, T, S, V]`` log-softmax, no blocks and no recomputation.

    python benchmarks/speed.py                                  # CPU, small setting (~3 min, one thread)
    python benchmarks/speed.py --setting paper --device cuda    # GPU, the paper's sizes, bf16 autocast
    python benchmarks/speed.py --setting paper --batch-tokens 600 --steps 2 --modes soft vae-enum

Peak memory = weights + Adam moments (3 × the parameter bytes) + the largest extra memory of a step over
what was held before it (activations, enumeration blocks, gradients): on CUDA from
``torch.cuda.max_memory_allocated``; on CPU each mode runs again in a fresh subprocess — a warm-up step on
the smallest timed batch, then a step on the largest — and the extra is its peak resident set size
(``VmHWM``, reset before the step) above its size before the step (glibc is told to return large blocks to
the system at once, ``MALLOC_MMAP_THRESHOLD_``).

The naive path runs at the largest batch it fits: on CUDA the harness doubles the batch from
``--batch-tokens`` until a step runs out of memory (or ``--naive-max-tokens``; halving instead when even
the main batch does not fit); on CPU it uses the main batch, which both paths fit. ``--find-max-batch CAP``
(CUDA) searches the largest ``vae-enum`` batch the same way; every row also gives the time an IWSLT'14
epoch (3.6 M target tokens) would take at its rate.

Data: the lengths and tokens of IWSLT'14 De-En ``valid.{de,en}.bpe`` (``--data``; pairs over 125 tokens
dropped, vocabularies by frequency — capped at ``vocab`` in the small setting), batched by
:class:`varattn.data.TokenBatcher` with length bucketing; without those files, random tokens with
IWSLT-like lengths. Weights are random: speed does not depend on what was learnt.

Writes ``benchmarks/results/speed_<device>[_<setting>].{json,md}`` (``--out`` to change), and prints the
table.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from harness import (RESULTS, command_line, environment, fmt, machine, peak_rss_bytes, reset_peak_rss, rss_bytes,
                     table, write_results)
from varattn import latent
from varattn.config import ModelConfig
from varattn.data.vocab import PAD
from varattn.latent import MODES
from varattn.models.seq2seq import Seq2Seq
from varattn.modules.output import TokenLikelihood
from workloads import IWSLT, Device, Pairs, load_pairs, make_batches

ENUMERATING = ("marginal", "hard-enum", "vae-enum")
IWSLT_EPOCH_TOKENS = 3.6e6  # target tokens of an IWSLT'14 De-En training epoch (issue 7)

SETTINGS = {
    # the paper's sizes (docs/design.md §3, ModelConfig's defaults); full IWSLT validation vocabularies
    "paper": {"model": {}, "vocab": 0, "batch_tokens": 4096, "steps": 5, "warmup": 2},
    # a third-width model on a 1,000-token vocabulary: every mode in a few minutes on two CPU cores
    "small": {"model": {"emb_size": 128, "enc_hidden": 128, "dec_hidden": 256, "attn_size": 128,
                        "output_size": 256, "inf_hidden": 128},
              "vocab": 1000, "batch_tokens": 800, "steps": 3, "warmup": 1},
    # a toy model for smoke tests of the harness (benchmarks/gpu_suite.sh --tiny): seconds on one CPU thread
    "tiny": {"model": {"emb_size": 16, "enc_hidden": 16, "enc_layers": 1, "dec_hidden": 32, "dec_layers": 1,
                       "attn_size": 16, "inf_hidden": 16, "inf_layers": 1},
             "vocab": 200, "batch_tokens": 200, "steps": 1, "warmup": 1,
             "transformer": {"encoder_layers": 1, "decoder_layers": 1, "width": 16, "heads": 2, "ffn": 32,
                             "inf_layers": 1}},
}


# ----------------------------------------------------------------------------- data


def cells(batch) -> int:
    return int(batch.tgt_out.numel() * batch.src.size(1))


# ----------------------------------------------------------------------------- the naive reference


class NaiveLikelihood:
    """The 2018 path, for reference: ``[B, T, S, H+M]`` concatenation, ``W_o`` on it, full ``[B, T, S, V]``
    log-softmax, float32, nothing blocked or recomputed. Same weights as the model's output layer."""

    def __init__(self, model: Seq2Seq, hidden, memory, targets):
        self.model, self.hidden, self.memory, self.targets = model, hidden, memory, targets

    def enumerate(self):
        layer = self.model.output
        with torch.autocast(self.hidden.device.type, enabled=False):
            hidden, memory = self.hidden.float(), self.memory.float()
            (batch, length, _), sources = hidden.shape, memory.size(1)
            both = torch.cat([hidden[:, :, None, :].expand(-1, -1, sources, -1),
                              memory[:, None, :, :].expand(-1, length, -1, -1)], -1)          # [B, T, S, H+M]
            w_o = torch.cat([layer.from_hidden.weight, layer.from_memory.weight], 1)          # [O, H+M]
            o = layer.dropout(torch.tanh(F.linear(both, w_o, layer.from_hidden.bias)))        # [B, T, S, O]
            log_probs = F.log_softmax(layer.generator(o), -1)                                 # [B, T, S, V]
            index = self.targets[:, :, None, None].expand(batch, length, sources, 1)
            return log_probs.gather(-1, index).squeeze(-1)

    def __call__(self, weights):
        raise NotImplementedError("the naive reference only enumerates")


def naive_forward(model: Seq2Seq, batch) -> latent.LatentOutput:
    encoded = model.encode(batch.src, batch.src_lengths)
    hidden, prior = model.decoder(encoded, batch.tgt_in)
    posterior = None
    if model.inference is not None:
        posterior = model.inference(batch.src, batch.src_lengths, batch.tgt_out, batch.tgt_lengths)
    return latent.LatentOutput(prior, posterior, encoded.mask[:, None, :],
                               NaiveLikelihood(model, hidden, encoded.memory, batch.tgt_out), batch.tgt_out != PAD)


# ----------------------------------------------------------------------------- measuring


def peak_matmul(dev: Device, size: int, seconds: float = 1.0) -> float:
    """FLOP/s of a square ``size`` matrix product: bf16 on CUDA (with bf16 on), float32 otherwise."""
    dtype = torch.bfloat16 if dev.bf16 else torch.float32
    a = torch.randn(size, size, device=dev.device, dtype=dtype)
    b = torch.randn(size, size, device=dev.device, dtype=dtype)
    a @ b
    dev.sync()
    best, spent = 0.0, 0.0
    while spent < seconds:
        start = time.perf_counter()
        a @ b
        dev.sync()
        took = time.perf_counter() - start
        spent += took
        best = max(best, 2 * size**3 / took)
    return best


def model_config(setting: dict, mode: str, block: int | None) -> ModelConfig:
    cfg = ModelConfig(mode=mode, arch=setting.get("arch", "rnn"), **setting["model"])
    if block:
        cfg.enum_block = block
    return cfg


class Runner:
    """A model, its Adam optimiser and sampling generator; one training step at a time."""

    def __init__(self, mode: str, naive: bool, setting: dict, pairs: Pairs, dev: Device, seed: int,
                 block: int | None):
        torch.manual_seed(seed)
        self.mode, self.naive, self.dev = mode, naive, dev
        self.cfg = model_config(setting, mode, block)
        if self.cfg.arch == "rnn":
            self.model = Seq2Seq(self.cfg, pairs.src_vocab, pairs.tgt_vocab).to(dev.device)
        else:  # another architecture of the registry, with its section's sizes (the setting's, else its defaults)
            from varattn.config import Config
            from varattn.models.transformer import TransformerConfig
            from varattn.models.registry import build_translation_model

            whole = Config(model=self.cfg, transformer=TransformerConfig(**setting.get("transformer", {})))
            self.model = build_translation_model(whole, pairs.src_vocab, pairs.tgt_vocab).to(dev.device)
        self.model.train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=3e-4, eps=1e-8)
        self.generator = torch.Generator(dev.device).manual_seed(seed)
        self.state_bytes = 3 * sum(p.numel() * p.element_size() for p in self.model.parameters())  # w + Adam

    def loss(self, batch):
        cfg = self.cfg
        fwd = naive_forward(self.model, batch) if self.naive else self.model(
            batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, batch.tgt_lengths)
        loss, _ = latent.batch_objective(latent.get_mode(cfg.mode), fwd, samples=cfg.samples,
                                         temperature=cfg.temperature, generator=self.generator)
        return loss

    def step(self, batch) -> float:
        """One training step; seconds."""
        self.optimizer.zero_grad(set_to_none=True)  # first, so that memory before a step holds no gradients
        self.dev.sync()
        start = time.perf_counter()
        with self.dev.autocast():
            loss = self.loss(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        self.optimizer.step()
        self.dev.sync()
        return time.perf_counter() - start


def cuda_step_peak(runner: Runner, batch) -> tuple[float, int]:
    """A CUDA step's seconds and its peak bytes: weights and Adam moments + the step's largest extra."""
    torch.cuda.reset_peak_memory_stats(runner.dev.device)
    before = torch.cuda.memory_allocated(runner.dev.device)
    seconds = runner.step(batch)
    return seconds, runner.state_bytes + torch.cuda.max_memory_allocated(runner.dev.device) - before


def enumeration_seconds(model: Seq2Seq, batches: list, dev: Device, naive: bool) -> float:
    """Seconds of ``enumerate()`` + backward alone over ``batches`` (states from the model, detached)."""
    total = 0.0
    for batch in batches:
        with torch.no_grad(), dev.autocast():
            encoded = model.encode(batch.src, batch.src_lengths)
            hidden, _ = model.decoder(encoded, batch.tgt_in)
            hidden_proj = model.output.from_hidden(hidden)
        leaves = [t.detach().requires_grad_() for t in (
            (hidden, encoded.memory) if naive else (hidden_proj, encoded.out_memory))]
        grad = (batch.tgt_out != PAD)[:, :, None] & (batch.src != PAD)[:, None, :]
        dev.sync()
        start = time.perf_counter()
        with dev.autocast():
            if naive:
                values = NaiveLikelihood(model, *leaves, batch.tgt_out).enumerate()
            else:
                values = TokenLikelihood(model.output, *leaves, batch.tgt_out, model.config.enum_block).enumerate()
        values.backward(grad.to(values.dtype))
        dev.sync()
        total += time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    return total


def fits(mode: str, naive: bool, tokens: int, setting: dict, pairs: Pairs, dev: Device, args) -> bool:
    """CUDA: whether a training step on the largest of the run's batches of ``tokens`` fits in memory."""
    batch = max(make_batches(pairs, tokens, args.warmup + args.steps, args.seed), key=cells).to(dev.device)
    runner = Runner(mode, naive, setting, pairs, dev, args.seed, args.block)
    try:
        runner.step(batch)
        return True
    except torch.cuda.OutOfMemoryError:
        return False
    finally:
        del runner, batch
        gc.collect()
        torch.cuda.empty_cache()


def largest_batch(mode: str, naive: bool, start: int, cap: int, setting: dict, pairs: Pairs, dev: Device,
                  args) -> int | None:
    """CUDA: the largest ``start · 2^k`` batch (tokens, at most ``cap``) whose step fits; None if none
    down to 64 tokens does."""
    tokens = start
    if not fits(mode, naive, tokens, setting, pairs, dev, args):
        while tokens > 64:
            tokens //= 2
            if fits(mode, naive, tokens, setting, pairs, dev, args):
                return tokens
        return None
    while 2 * tokens <= cap and fits(mode, naive, 2 * tokens, setting, pairs, dev, args):
        tokens *= 2
    return tokens


# ----------------------------------------------------------------------------- CPU memory probes


def probe(args, setting: dict, pairs: Pairs, dev: Device) -> None:
    """Subprocess body: a warm-up step on the smallest timed batch (loads the kernels, makes the Adam
    moments), then the peak resident memory of a step on the largest, above the memory before it."""
    batches = make_batches(pairs, args.naive_tokens if args.probe_naive else args.batch_tokens,
                           args.warmup + args.steps, args.seed)
    runner = Runner(args.probe, args.probe_naive, setting, pairs, dev, args.seed, args.block)
    runner.step(min(batches, key=cells))
    runner.optimizer.zero_grad(set_to_none=True)
    batch = max(batches, key=cells)
    before = rss_bytes()
    exact = reset_peak_rss()
    runner.step(batch)
    extra = peak_rss_bytes() - before
    print(json.dumps({"peak_bytes": runner.state_bytes + extra, "step_extra_bytes": extra, "cells": cells(batch),
                      "high_water_reset": exact}))


def cpu_peak_memory(args, mode: str, naive: bool) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--probe", mode, "--setting", args.setting,
               "--device", "cpu", "--batch-tokens", str(args.batch_tokens), "--naive-tokens", str(args.naive_tokens),
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--seed", str(args.seed),
               "--data", args.data, "--threads", str(torch.get_num_threads()), "--arch", args.arch]
    if not args.input_feed:
        command.append("--no-input-feed")
    if args.cuda_graph:
        command.append("--cuda-graph")
    if args.block:
        command += ["--block", str(args.block)]
    if naive:
        command.append("--probe-naive")
    env = environment(torch.get_num_threads(), MALLOC_MMAP_THRESHOLD_="65536")
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"memory probe for {mode} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- the run


def run(args) -> dict:
    dev = Device(torch.device(args.device), args.bf16)
    setting = SETTINGS[args.setting]
    pairs = load_pairs(Path(args.data), setting["vocab"], args.seed)
    cfg = model_config(setting, "soft", args.block)
    if cfg.arch == "rnn":
        output_size = cfg.output_size or cfg.dec_hidden
    else:  # the Transformer's output layer reads o = tanh(W [h; c]) of its width by default
        from varattn.models.transformer import TransformerConfig

        output_size = cfg.output_size or TransformerConfig(**setting.get("transformer", {})).width
    modes = args.modes
    count = args.warmup + args.steps
    batches = [b.to(dev.device) for b in make_batches(pairs, args.batch_tokens, count, args.seed)]
    info = machine(dev.device)
    peak = peak_matmul(dev, args.matmul_size)
    print(f"# {where(info)}, {info['threads']} threads, torch {info['torch']}; "
          f"{dev.dtype}; matmul peak {peak / 1e9:.1f} GFLOP/s", flush=True)

    # the naive path's batch, then every runner (the modes take turns step by step)
    enum_modes = [m for m in modes if m in ENUMERATING] if not args.no_naive else []
    naive_tokens, naive_list = args.batch_tokens, []
    if enum_modes:
        if dev.cuda:  # the largest batch the naive path fits, for its hungriest enumerating mode
            naive_tokens = largest_batch(enum_modes[-1], True, args.batch_tokens, args.naive_max_tokens, setting,
                                         pairs, dev, args)
            if naive_tokens is None:
                raise SystemExit("the naive path does not fit a batch of 64 tokens")
        naive_list = [b.to(dev.device) for b in make_batches(pairs, naive_tokens, count, args.seed)]
    args.naive_tokens = naive_tokens
    max_batch = None
    if dev.cuda and args.find_max_batch and "vae-enum" in modes:
        print("  searching the largest vae-enum batch...", flush=True)
        max_batch = largest_batch("vae-enum", False, args.batch_tokens, args.find_max_batch, setting, pairs, dev,
                                  args)
    runners = [(m, False, batches) for m in modes] + [(m, True, naive_list) for m in enum_modes]
    built = {(m, naive): Runner(m, naive, setting, pairs, dev, args.seed, args.block) for m, naive, _ in runners}
    seconds = {key: [] for key in built}
    peaks = {key: 0 for key in built}
    for step in range(count):
        for mode, naive, plan in runners:
            runner = built[(mode, naive)]
            if dev.cuda:
                took, peak_bytes = cuda_step_peak(runner, plan[step])
                peaks[(mode, naive)] = max(peaks[(mode, naive)], peak_bytes)
            else:
                took = runner.step(plan[step])
            if step >= args.warmup:
                seconds[(mode, naive)].append(took)
        print(f"  step {step + 1}/{count} done", flush=True)

    # enumerate() + backward alone, ours and naive, on the same batches
    enum_model = next((built[(m, False)].model for m in modes if m in ENUMERATING and cfg.arch == "rnn"), None)
    enumeration = None
    if enum_model is not None:
        timed = batches[args.warmup:]
        flops = sum(3 * 2 * cells(b) * output_size * pairs.tgt_vocab for b in timed)
        ours = enumeration_seconds(enum_model, timed, dev, naive=False)
        enumeration = {"flops": flops, "seconds": ours, "flop_per_s": flops / ours,
                       "fraction_of_peak": flops / ours / peak, "block_cells": enum_model.config.enum_block}
        if enum_modes:
            naive_timed = naive_list[args.warmup:]
            naive_flops = sum(3 * 2 * cells(b) * output_size * pairs.tgt_vocab for b in naive_timed)
            naive_s = enumeration_seconds(enum_model, naive_timed, dev, naive=True)
            enumeration["naive"] = {"flops": naive_flops, "seconds": naive_s, "flop_per_s": naive_flops / naive_s,
                                    "fraction_of_peak": naive_flops / naive_s / peak}
    del built

    # rates per step (tokens / seconds), then medians: a burst of load on a shared machine moves one step,
    # not the figure
    rows = []
    per_step = {}
    for mode, naive, plan in runners:
        used = plan[args.warmup:]
        took = seconds[(mode, naive)]
        per_step[(mode, naive)] = [b.num_tgt_tokens / t for b, t in zip(used, took)]
        enum_flops = [3 * 2 * cells(b) * output_size * pairs.tgt_vocab if mode in ENUMERATING else 0 for b in used]
        row = {"mode": mode, "path": "naive" if naive else "varattn",
               "tokens_per_s": float(np.median(per_step[(mode, naive)])),
               "tokens_per_s_total": sum(b.num_tgt_tokens for b in used) / sum(took),
               "seconds_per_step": took, "steps": len(used),
               "batch_tokens": naive_tokens if naive else args.batch_tokens,
               "target_tokens_per_batch": sum(b.num_tgt_tokens for b in used) / len(used),
               "cells_per_batch": sum(cells(b) for b in used) / len(used),
               "enum_flops_per_step": sum(enum_flops) / len(used),
               "iwslt_epoch_hours": IWSLT_EPOCH_TOKENS / float(np.median(per_step[(mode, naive)])) / 3600,
               "enum_fraction_of_peak": (float(np.median([f / t for f, t in zip(enum_flops, took)])) / peak
                                         if mode in ENUMERATING else None)}
        if dev.cuda:
            row["peak_bytes"] = peaks[(mode, naive)]
        rows.append(row)

    def paired(a: tuple, b: tuple) -> float:
        return float(np.median([x / y for x, y in zip(per_step[a], per_step[b])]))

    rate = {(r["mode"], r["path"] == "naive"): r["tokens_per_s"] for r in rows}
    for row in rows:
        mine = (row["mode"], row["path"] == "naive")
        row["vs_soft"] = rate[mine] / rate[("soft", False)] if "soft" in modes and not mine[1] else None
        if row["vs_soft"] is not None:
            row["vs_soft_paired"] = paired(mine, ("soft", False))
        if not mine[1] and row["mode"] in enum_modes:
            row["vs_naive"] = rate[mine] / rate[(row["mode"], True)]
            if not dev.cuda:  # on CPU the naive path runs the main batches
                row["vs_naive_paired"] = paired(mine, (row["mode"], True))
    if not dev.cuda and not args.no_memory:
        print("  memory probes (one subprocess per mode, two at a time)...", flush=True)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1))) as pool:
            found = pool.map(lambda r: cpu_peak_memory(args, r["mode"], r["path"] == "naive"), rows)
            for row, result in zip(rows, found):
                row["peak_bytes"] = result["peak_bytes"]
    return {
        "what": "training target tokens/s and peak memory per mode (benchmarks/speed.py)",
        "device": str(dev.device), "dtype": dev.dtype, "setting": args.setting,
        "model": {k: v for k, v in asdict(cfg).items() if k != "mode"}, "output_size": output_size,
        "vocab": {"src": pairs.src_vocab, "tgt": pairs.tgt_vocab}, "data": pairs.source,
        "batch_tokens": args.batch_tokens, "naive_batch_tokens": naive_tokens,
        "naive_batch_note": ("largest batch the naive path fits (doubling search)" if dev.cuda
                             else "the main batch: both paths fit it on CPU"),
        "steps": args.steps, "warmup": args.warmup, "matmul": {"size": args.matmul_size, "flop_per_s": peak},
        "largest_vae_enum_batch_tokens": max_batch,
        "machine": info, "enumeration": enumeration, "rows": rows,
        "memory_note": "weights + Adam moments + the step's peak extra memory (activations, gradients) above "
                       "what was held before it: " + ("torch.cuda.max_memory_allocated" if dev.cuda else
                                                      "peak RSS (VmHWM) of a fresh subprocess, largest batch"),
    }


def where(info: dict) -> str:
    """The GPU a run measured on CUDA, else the CPU."""
    if info.get("device", "cpu").startswith("cuda") and info.get("gpu"):
        return info["gpu"]
    return f"{info['cpu']} ({info['cpu_cores']} cores)"


def report(result: dict) -> str:
    info = result["machine"]
    rows = [[r["mode"], r["path"], f"{r['tokens_per_s']:.0f}", fmt(r.get("vs_soft"), ".2f"),
             fmt(r.get("vs_naive"), ".1f"), fmt(r.get("peak_bytes") and r["peak_bytes"] / 2**20, ".0f"),
             f"{r['target_tokens_per_batch']:.0f}",
             fmt(r["enum_flops_per_step"] / 1e9 if r["enum_flops_per_step"] else None, ".1f"),
             fmt(r["enum_fraction_of_peak"] and 100 * r["enum_fraction_of_peak"], ".1f"),
             f"{r['iwslt_epoch_hours']:.1f}"] for r in result["rows"]]
    lines = [
        f"{where(info)}, {info['threads']} threads, torch {info['torch']}, load {info['load_average_1min']:.1f}; "
        f"{result['dtype']}; setting {result['setting']} (O = {result['output_size']}, "
        f"V = {result['vocab']['tgt']}); batch {result['batch_tokens']} tokens (padded source + target), "
        f"naive batch {result['naive_batch_tokens']} ({result['naive_batch_note']}); "
        f"matmul peak {result['matmul']['flop_per_s'] / 1e9:.1f} GFLOP/s"
        + ("; no input feeding (model.input_feed=false)." if result["model"].get("input_feed") is False else
           "; the decoder loop from CUDA graphs (model.cuda_graph=true)." if result["model"].get("cuda_graph") else "."),
        "",
        table(["mode", "path", "target tok/s", "× soft", "× naive", "peak MB", "tgt tokens/batch",
               "enum GFLOP/step (3×fwd)", "enum % of peak (whole step)", "IWSLT epoch (h)"], rows, align="llrrrrrrrr"),
    ]
    enum = result["enumeration"]
    if enum:
        text = (f"\n`enumerate()` + backward alone (block {enum['block_cells']} cells): "
                f"{enum['flop_per_s'] / 1e9:.1f} GFLOP/s = {100 * enum['fraction_of_peak']:.1f}% of the matmul peak")
        if "naive" in enum:
            text += (f"; naive path {enum['naive']['flop_per_s'] / 1e9:.1f} GFLOP/s = "
                     f"{100 * enum['naive']['fraction_of_peak']:.1f}%")
        lines.append(text + ".")
    if result.get("largest_vae_enum_batch_tokens"):
        lines.append(f"\nLargest vae-enum batch that fits: {result['largest_vae_enum_batch_tokens']} padded tokens.")
    lines.append("\nIWSLT epoch: 3.6 M target tokens at the measured rate.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), default=None,
                        help="model sizes (default: paper on CUDA, small on CPU)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--batch-tokens", type=int, default=None, help="padded source + target tokens per batch")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per mode")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per mode first")
    parser.add_argument("--block", type=int, default=None, help="model.enum_block (cells per enumeration block)")
    parser.add_argument("--arch", default="rnn", help="model.arch (another than rnn: no naive path, no "
                        "enumerate()-alone timing; sizes from the setting's transformer section, else its defaults)")
    parser.add_argument("--no-input-feed", dest="input_feed", action="store_false",
                        help="rnn: model.input_feed=false (the decoder LSTM as one call over the target; no naive path)")
    parser.add_argument("--cuda-graph", action="store_true",
                        help="rnn with input feeding: model.cuda_graph=true (the decoder loop replayed from CUDA "
                        "graphs on CUDA; the eager loop on a CPU); no naive path")
    parser.add_argument("--no-bf16", dest="bf16", action="store_false", help="float32 on CUDA too")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU intra-op threads (default 1: on a shared machine, threads of one process stall "
                             "on each other; the matmul peak is measured with the same number)")
    parser.add_argument("--matmul-size", type=int, default=None, help="side of the peak-FLOP matrix product")
    parser.add_argument("--naive-max-tokens", type=int, default=65536, help="CUDA: largest naive batch tried")
    parser.add_argument("--find-max-batch", type=int, default=0, metavar="CAP",
                        help="CUDA: also find the largest vae-enum batch (padded tokens, doubling up to CAP) that fits")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive reference path")
    parser.add_argument("--no-memory", action="store_true", help="CPU: skip the memory subprocesses")
    parser.add_argument("--data", default=str(IWSLT), help="folder with valid.{de,en}.bpe")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=None, help="output path without suffix (default: "
                        "benchmarks/results/speed_<device>[_<setting>])")
    parser.add_argument("--probe", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--probe-naive", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--naive-tokens", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device_type = torch.device(args.device).type
    if args.threads or device_type == "cpu":
        torch.set_num_threads(args.threads or 1)
    default_setting = "paper" if device_type == "cuda" else "small"
    args.setting = args.setting or default_setting
    if args.arch != "rnn":  # the naive reference and the FLOP counts are the RNN's
        SETTINGS[args.setting] = {**SETTINGS[args.setting], "arch": args.arch}
        args.no_naive = True
    if not args.input_feed:
        SETTINGS[args.setting] = {**SETTINGS[args.setting],
                                  "model": {**SETTINGS[args.setting]["model"], "input_feed": False}}
        args.no_naive = True
    if args.cuda_graph:
        SETTINGS[args.setting] = {**SETTINGS[args.setting],
                                  "model": {**SETTINGS[args.setting]["model"], "cuda_graph": True}}
        args.no_naive = True
    setting = SETTINGS[args.setting]
    args.batch_tokens = args.batch_tokens or setting["batch_tokens"]
    args.steps = args.steps or setting["steps"]
    args.warmup = setting["warmup"] if args.warmup is None else args.warmup
    args.matmul_size = args.matmul_size or (8192 if device_type == "cuda" else 2048)
    if args.probe:
        pairs = load_pairs(Path(args.data), setting["vocab"], args.seed)
        probe(args, setting, pairs, Device(torch.device(args.device), args.bf16))
        return
    result = run(args)
    text = report(result)
    print(text)
    suffix = "" if args.setting == default_setting else f"_{args.setting}"
    out = Path(args.out or RESULTS / f"speed_{device_type}{suffix}")
    write_results(out, result, f"# Training speed and memory ({result['device']}, setting {result['setting']})\n\n"
                  f"{text}\n", command=command_line(__file__, argv))
    print(f"wrote {out}.json and {out}.md")


if __name__ == "__main__":
    main()
