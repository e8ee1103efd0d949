"""Training speed, Transformer vs RNN, per latent mode, in one interleaved run (issue 12).

Every batch shape is first seen once by a throw-away model of each architecture (CUDA libraries pick and
cache kernels per shape; without this the first trainee of each batch pays for it). Then each timed batch
is trained by every (mode, architecture) in turn — forward, the mode's objective,
backward, gradient clipping, an Adam step, what ``varattn train`` does — so a busy machine slows them
alike; rates are medians of target tokens per second over the timed batches, and the ratio is
Transformer / RNN of those medians. Batches come from IWSLT'14 De-En ``valid.*.bpe`` (the data and device
helpers of ``benchmarks/speed.py``, in ``benchmarks/workloads.py``; random tokens with IWSLT-like lengths
where the files are absent).

    python benchmarks/transformer_speed.py                              # CPU, one thread, CPU-scale sizes
    python benchmarks/transformer_speed.py --setting iwslt --device cuda  # IWSLT sizes, bf16 autocast

Settings: ``cpu`` — the RNN of ``benchmarks/multi30k_modes.py`` (embeddings 128, BiLSTM 2x64, decoder 128)
against the Transformer of ``benchmarks/transformer_multi30k.py`` (2+2 layers, width 128, 4 heads, ffn
256), vocabularies capped at 2,000, batches of 600 padded tokens; ``iwslt`` — the paper's RNN (ModelConfig
defaults) against the IWSLT'14 small Transformer (TransformerConfig defaults: 6+6, 512, 4 heads, 1024),
full vocabularies, batches of 4,096 tokens.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from harness import RESULTS, command_line, machine, table, write_results
from varattn import latent
from varattn.config import Config, ModelConfig
from varattn.models.transformer import TransformerConfig
from varattn.models.registry import build_translation_model
from workloads import IWSLT, Device, load_pairs, make_batches

SETTINGS = {
    "cpu": {"rnn": {"emb_size": 128, "enc_hidden": 64, "enc_layers": 1, "dec_hidden": 128, "dec_layers": 1,
                    "attn_size": 128, "inf_hidden": 64, "inf_layers": 1, "dropout": 0.2},
            "transformer": {"encoder_layers": 2, "decoder_layers": 2, "width": 128, "heads": 4, "ffn": 256,
                            "dropout": 0.2, "inf_layers": 1},
            "vocab": 2000, "batch_tokens": 600, "steps": 6, "warmup": 1},
    "iwslt": {"rnn": {}, "transformer": {}, "vocab": 0, "batch_tokens": 4096, "steps": 8, "warmup": 2},
}
MODES = ["soft", "marginal", "hard-enum", "vae-enum", "vae-sample"]


class Trainee:
    def __init__(self, arch: str, mode: str, setting: dict, pairs, device: torch.device, seed: int):
        torch.manual_seed(seed)
        model = ModelConfig(mode=mode, arch=arch, enum_block=100000, **(setting["rnn"] if arch == "rnn" else {}))
        config = Config(model=model, transformer=TransformerConfig(**setting["transformer"]))
        self.model = build_translation_model(config, pairs.src_vocab, pairs.tgt_vocab).to(device).train()
        self.mode = latent.get_mode(mode)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=3e-4)
        self.generator = torch.Generator(device).manual_seed(seed)
        self.parameters = sum(p.numel() for p in self.model.parameters())

    def step(self, batch, dev: Device) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        dev.sync()
        start = time.perf_counter()
        with dev.autocast():
            out = self.model(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, batch.tgt_lengths)
            loss, _ = latent.batch_objective(self.mode, out, generator=self.generator)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        self.optimizer.step()
        dev.sync()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="cpu")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--modes", nargs="+", default=MODES)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", default=str(IWSLT))
    parser.add_argument("--out", default=None, help="path without suffix (default results/transformer_speed_<setting>[_<device>])")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    setting = SETTINGS[args.setting]
    device = torch.device(args.device)
    dev = Device(device, bf16=True)
    pairs = load_pairs(Path(args.data), setting["vocab"], 1)
    steps = args.steps or setting["steps"]
    batches = [b.to(device) for b in make_batches(pairs, setting["batch_tokens"], setting["warmup"] + steps, 1)]
    trainees = {(mode, arch): Trainee(arch, mode, setting, pairs, device, 1) for mode in args.modes
                for arch in ("rnn", "transformer")}
    for arch in ("rnn", "transformer"):  # every batch shape seen once first (kernel choices are cached per shape)
        warm = Trainee(arch, "soft", setting, pairs, device, 2)
        for batch in batches:
            warm.step(batch, dev)
        del warm
    seconds: dict = {key: [] for key in trainees}
    for n, batch in enumerate(batches):  # interleaved: every trainee on the same batch, in turn
        for key, trainee in trainees.items():
            took = trainee.step(batch, dev)
            if n >= setting["warmup"]:
                seconds[key].append((took, int((batch.tgt_out != 0).sum())))
        print(f"batch {n + 1}/{len(batches)}", flush=True)
    rows = []
    for mode in args.modes:
        rate = {arch: statistics.median(t / s for s, t in seconds[(mode, arch)]) for arch in ("rnn", "transformer")}
        rows.append({"mode": mode, "rnn_tokens_per_s": rate["rnn"], "transformer_tokens_per_s": rate["transformer"],
                     "ratio": rate["transformer"] / rate["rnn"],
                     "parameters": {arch: trainees[(mode, arch)].parameters for arch in ("rnn", "transformer")}})
    info = machine(device)
    record = {"machine": info, "setting": args.setting, "sizes": setting, "dtype": dev.dtype, "data": pairs.source,
              "batches": len(batches) - setting["warmup"], "rows": rows}
    suffix = "" if args.setting == device.type else f"_{device.type}"
    out = Path(args.out) if args.out else RESULTS / f"transformer_speed_{args.setting}{suffix}"
    where = info["gpu"] if device.type == "cuda" and info.get("gpu") else info["cpu"]
    lines = [f"Training speed, Transformer vs RNN ({args.setting} sizes), {where}, "
             f"{info['threads']} thread(s), {dev.dtype}; {record['batches']} timed batches of "
             f"{setting['batch_tokens']} padded tokens ({pairs.source}), the trainees interleaved batch by batch.",
             "", table(["mode", "RNN target tok/s", "Transformer target tok/s", "Transformer / RNN",
                        "parameters RNN / Transformer"],
                       [[row["mode"], f"{row['rnn_tokens_per_s']:,.0f}", f"{row['transformer_tokens_per_s']:,.0f}",
                         f"{row['ratio']:.2f}", f"{row['parameters']['rnn'] / 1e6:.2f} M / "
                         f"{row['parameters']['transformer'] / 1e6:.2f} M"] for row in rows])]
    write_results(out, record, "\n".join(lines), command=command_line(__file__))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
