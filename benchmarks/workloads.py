"""What several benchmarks measure on, in one place (so no script imports another):

- :data:`SIZES`: the model sizes of the A/B scripts (``step_speed_ab.py``, ``adam_ab.py``,
  ``compile_decoder_ab.py``);
- IWSLT'14 batches for the speed scripts (``speed.py``, ``transformer_speed.py``): :func:`load_pairs`,
  :func:`make_batches`, and :class:`Device` (synchronisation and bf16 autocast);
- the SIGMORPHON 2021 task 1 medium languages and the shared task's baseline (``g2p_sigmorphon.py``,
  ``g2p_peer.py``);
- the Multi30k CPU-scale learning curves of the sampled and relaxed modes (``vae_sample.py curves``,
  ``vae_dirichlet.py``): :data:`CURVE_SIZES`, :data:`CURVE_TRAIN`, :func:`curve`, :func:`curves_table`,
  and :func:`model_and_batch` (a small model and a real batch for the gradient probes).

varattn and torch are imported where they are used, so an A/B parent process imports neither.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np

import harness
from harness import ROOT, SHARED

IWSLT = SHARED / "iwslt14-deen"

SIZES = {  # emb, encoder hidden per direction, decoder hidden (= attention = output), layers
    "256": dict(emb_size=256, enc_hidden=128, enc_layers=1, dec_hidden=256, dec_layers=1, attn_size=256,
                output_size=256, inf_hidden=128, inf_layers=1),
    "128": dict(emb_size=128, enc_hidden=64, enc_layers=1, dec_hidden=128, dec_layers=1, attn_size=128,
                output_size=128, inf_hidden=64, inf_layers=1),
    "paper": {},
}

LANGS = ["arm_e", "bul", "dut", "fre", "geo", "hbs_latn", "hun", "jpn_hira", "kor", "vie_hanoi"]
# test WER of the shared task's baseline (ensembled neural transducer), from the task repository's README
BASELINE = {"arm_e": 7.00, "bul": 18.30, "dut": 14.70, "fre": 8.50, "geo": 0.00, "hbs_latn": 32.10, "hun": 1.80,
            "jpn_hira": 5.20, "kor": 16.30, "vie_hanoi": 2.50}
BASELINE_MACRO = 10.64


# ----------------------------------------------------------------------------- IWSLT'14 batches


class Pairs:
    """Token-id pairs in memory, with the ``src(i)`` / ``tgt(i)`` interface ``collate`` reads."""

    def __init__(self, src: list[np.ndarray], tgt: list[np.ndarray], src_vocab: int, tgt_vocab: int, source: str):
        self.src_ids, self.tgt_ids = src, tgt
        self.src_vocab, self.tgt_vocab, self.source = src_vocab, tgt_vocab, source

    def src(self, i: int) -> np.ndarray:
        return self.src_ids[i]

    def tgt(self, i: int) -> np.ndarray:
        return self.tgt_ids[i]


def _ids(lines: list[list[str]], cap: int) -> tuple[list[np.ndarray], int]:
    from varattn.data.vocab import SPECIALS, UNK

    counts = Counter(token for line in lines for token in line)
    kept = sorted(counts, key=lambda t: (-counts[t], t))[: cap or None]
    index = {token: len(SPECIALS) + k for k, token in enumerate(kept)}
    return [np.array([index.get(t, UNK) for t in line], dtype=np.int64) for line in lines], len(SPECIALS) + len(kept)


def load_pairs(data: Path, vocab_cap: int, seed: int, max_len: int = 125) -> Pairs:
    """IWSLT'14 De-En ``valid.{de,en}.bpe`` from ``data`` (pairs over ``max_len`` tokens dropped,
    vocabularies by frequency, capped at ``vocab_cap`` unless 0); without the files, random tokens with
    IWSLT-like lengths."""
    from varattn.data.vocab import SPECIALS

    src_file, tgt_file = data / "valid.de.bpe", data / "valid.en.bpe"
    if src_file.is_file() and tgt_file.is_file():
        pairs = [(s.split(), t.split()) for s, t in zip(src_file.read_text(encoding="utf-8").splitlines(),
                                                         tgt_file.read_text(encoding="utf-8").splitlines())]
        pairs = [(s, t) for s, t in pairs if 0 < len(s) <= max_len and 0 < len(t) <= max_len]
        src, src_v = _ids([s for s, _ in pairs], vocab_cap)
        tgt, tgt_v = _ids([t for _, t in pairs], vocab_cap)
        return Pairs(src, tgt, src_v, tgt_v, f"IWSLT'14 De-En valid BPE ({data})")
    # no data beside the project: random tokens with IWSLT-like lengths (means 25 and 23 BPE tokens)
    rng = np.random.default_rng(seed)
    src_v = len(SPECIALS) + (min(vocab_cap, 9275) if vocab_cap else 9275)
    tgt_v = len(SPECIALS) + (min(vocab_cap, 7460) if vocab_cap else 7460)
    count = 7000
    src_len = np.clip(rng.gamma(2.5, 10.0, count), 1, max_len).astype(int)
    tgt_len = np.clip(src_len * rng.normal(0.92, 0.15, count), 1, max_len).astype(int)
    src = [rng.integers(len(SPECIALS), src_v, n) for n in src_len]
    tgt = [rng.integers(len(SPECIALS), tgt_v, n) for n in tgt_len]
    return Pairs(src, tgt, src_v, tgt_v, "random tokens, IWSLT-like lengths (no IWSLT files found)")


def make_batches(pairs: Pairs, max_tokens: int, count: int, seed: int) -> list:
    """The first ``count`` batches of ``max_tokens`` padded tokens, length-bucketed and shuffled."""
    from varattn.data.text.batching import TokenBatcher, collate

    batcher = TokenBatcher([len(s) for s in pairs.src_ids], [len(t) for t in pairs.tgt_ids], max_tokens,
                           shuffle=True, seed=seed)
    return [collate(pairs, indices) for indices in batcher.batches(0)[:count]]


class Device:
    """A torch device, whether steps synchronise on it (CUDA), and bf16 autocast (CUDA, when asked)."""

    def __init__(self, device, bf16: bool):
        self.device = device
        self.cuda = device.type == "cuda"
        self.bf16 = bf16 and self.cuda

    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)

    def autocast(self):
        import torch

        return torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=self.bf16)

    @property
    def dtype(self) -> str:
        return "bf16 autocast (float32 log-sum-exp, KL, weights)" if self.bf16 else "float32"


# ----------------------------------------------------------------------------- Multi30k CPU-scale curves

# the model and the training settings of multi30k_modes.py's CPU-scale setting (pairs <= 15 BPE tokens)
CURVE_SIZES = {"emb_size": 128, "enc_hidden": 64, "enc_layers": 1, "dec_hidden": 128, "dec_layers": 1,
               "attn_size": 128, "inf_hidden": 64, "inf_layers": 1}
CURVE_TRAIN = {"model.dropout": 0.2, "model.enum_block": 100000, "train.lr": 0.001, "train.decay_from_epoch": 4,
               "train.seed": 1, "train.progress": "false", "train.device": "cpu", "data.max_tokens": 600,
               "data.eval_max_tokens": 6000}


def curve(variant: str, mode: str, extra: dict, data, work, steps: int, every: int) -> dict:
    """One learning curve: ``varattn train configs/quickstart.yaml`` of ``mode`` at :data:`CURVE_SIZES`,
    :data:`CURVE_TRAIN` and ``extra`` on one thread, for ``steps`` steps with validation every ``every``,
    into ``work/variant`` (skipped when that run has its log already); the variant, mode, overrides and
    validation history."""
    run_dir = Path(work) / variant
    overrides = [f"data.dir={data}", f"model.mode={mode}", "train.epochs=1000", f"train.max_steps={steps}",
                 f"train.validate_every={every}"]
    overrides += [f"model.{k}={v}" for k, v in CURVE_SIZES.items()]
    overrides += [f"{k}={v}" for k, v in {**CURVE_TRAIN, **extra}.items()]
    if not (run_dir / "log.jsonl").is_file():
        started = time.perf_counter()
        print(f"training {variant} ({mode}, {extra or 'defaults'}) for {steps} steps...", flush=True)
        harness.varattn("train", ROOT / "configs" / "quickstart.yaml", "--out", run_dir, *overrides, console=True)
        print(f"  {variant}: {time.perf_counter() - started:.0f} s", flush=True)
    history = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    return {"variant": variant, "mode": mode, "overrides": extra, "history": history}


def curves_table(results: list[dict]) -> str:
    """One row per validation step, one column per curve: exact PPL / prior entropy / KL."""
    steps = sorted({h["step"] for r in results for h in r["history"]})
    rows = []
    for step in steps:
        cells = []
        for r in results:
            h = next((h for h in r["history"] if h["step"] == step), None)
            cells.append("" if h is None else f"{h['ppl']:.2f} / {h['entropy']:.2f} / {h.get('kl', 0):.3f}")
        rows.append([step, *cells])
    return harness.table(["step", *(r["variant"] for r in results)], rows, align="r" * (len(results) + 1))


def model_and_batch(folder: Path, pairs: int, seed: int, run: str | None = None, dropout: float = 0.0):
    """A ``vae-enum`` Seq2Seq at :data:`CURVE_SIZES` in float64 (seeded; a run's ``checkpoint_last``
    weights when ``run`` is given) and the first ``pairs`` training pairs of the prepared ``folder`` as one
    batch."""
    import torch

    from varattn.config import ModelConfig
    from varattn.data.text.batching import collate
    from varattn.data.text.prepared import load_prepared
    from varattn.models.seq2seq import Seq2Seq

    data = load_prepared(folder)
    split = data.split("train")
    torch.manual_seed(seed)
    model = Seq2Seq(ModelConfig(mode="vae-enum", dropout=dropout, **CURVE_SIZES), len(data.src_vocab),
                    len(data.tgt_vocab))
    if run:  # a trained run's weights (same sizes), e.g. a vae-sample run stuck near uniform
        from varattn.training import checkpoint

        checkpoint.copy_into(model, checkpoint.load_weights(checkpoint.resolve(run, "checkpoint_last")), strict=False)
    model.double()
    batch = collate(split, list(range(pairs)))
    return model, batch


def recipe_variants(recipe: str, specs: list[str]) -> tuple[dict, dict, object]:
    """``'NAME=override override ...'`` specs -> ({NAME: Config of ``recipe`` with those overrides},
    {NAME: the overrides}, the prepared data folder of the first one, relative to the checkout unless
    absolute)."""
    import os

    from varattn.config import files as config_files
    from varattn.data.text.prepared import load_prepared

    overrides = {name.strip(): rest.split() for name, _, rest in (spec.partition("=") for spec in specs)}
    configs = {name: config_files.load(recipe, given) for name, given in overrides.items()}
    folder = next(iter(configs.values())).data.dir
    return configs, overrides, load_prepared(folder if os.path.isabs(folder) else ROOT / folder)
