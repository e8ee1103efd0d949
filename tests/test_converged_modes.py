"""benchmarks/converged_modes.py: the job queue (grid first, seeds at the grid's winning learning rate)
and the table's mean ± sd (issue 16)."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

from conftest import load_benchmark


def load():
    return load_benchmark("converged_modes")


def test_seeds_wait_for_the_grid_and_take_its_best_learning_rate():
    cm = load()
    args = SimpleNamespace(modes=["soft", "vae-enum"], seeded=["soft", "vae-enum"])
    first, second = cm.LRS
    names = [j["name"] for j in cm.jobs(args, {})]
    assert names == ["syn-soft", "syn-vae-enum", f"soft-lr{first:g}-s1", f"vae-enum-lr{first:g}-s1",
                     f"soft-lr{second:g}-s1", f"vae-enum-lr{second:g}-s1"]
    # soft's grid is complete and the second rate wins; vae-enum has only its second rate: no seeds yet
    results = {f"soft-lr{first:g}-s1": {"lr": first, "best_metric": 9.5},
               f"soft-lr{second:g}-s1": {"lr": second, "best_metric": 8.7},
               f"vae-enum-lr{second:g}-s1": {"lr": second, "best_metric": 7.0}}
    seeds = [j for j in cm.jobs(args, results) if j["seed"] > 1]
    assert [(j["mode"], j["lr"], j["seed"]) for j in seeds] == [("soft", second, 2), ("soft", second, 3)]
    # a mode with only its first rate gets no seeds either; seeds come after the whole grid
    results[f"vae-enum-lr{first:g}-s1"] = {"lr": first, "best_metric": 7.5}
    del results[f"vae-enum-lr{second:g}-s1"]
    names = [j["name"] for j in cm.jobs(args, results)]
    assert not any(name.startswith("vae-enum") and name.endswith(("s2", "s3")) for name in names)
    assert names.index(f"soft-lr{second:g}-s2") > names.index(f"vae-enum-lr{second:g}-s1")
    assert cm.unlocks_seeds({"kind": "mt", "seed": 1, "lr": second, "mode": "vae-enum"}, args)


def test_overrides_stop_at_an_eighth_of_the_learning_rate():
    cm = load()
    args = SimpleNamespace(epochs=20, max_seconds=600.0)
    job = {"mode": "vae-gumbel", "lr": 0.003, "seed": 2, "kind": "mt"}
    flags = dict(item.split("=", 1) for item in cm.train_overrides(job, Path("/data"), args))
    assert math.isclose(float(flags["train.min_lr"]), 0.003 / 8)
    assert flags["train.seed"] == "2" and flags["model.temperature"] == "0.5" and flags["model.emb_size"] == "64"


def test_spread_is_the_mean_and_sample_standard_deviation():
    cm = load()
    values = [6.0, 6.5, 7.25]
    mean = sum(values) / 3
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
    assert cm.spread(values) == f"{mean:.2f} ± {sd:.2f}"
    assert cm.spread([5.0, float("nan")]) == "5.00" and cm.spread([None]) == "–"


def test_transformer_overrides_carry_its_sizes_and_the_rnn_protocol():
    cm = load()
    job = {"mode": "marginal", "lr": 0.003, "seed": 1, "kind": "mt"}
    rnn = SimpleNamespace(epochs=20, max_seconds=1200.0, arch="rnn")
    transformer = SimpleNamespace(epochs=20, max_seconds=1200.0, arch="transformer")
    for kind, sizes in (("mt", cm.TRANSFORMER), ("synthetic", cm.TRANSFORMER_SYNTHETIC)):
        job = {**job, "kind": kind}
        ours = dict(item.split("=", 1) for item in cm.train_overrides(job, Path("/data"), transformer))
        theirs = dict(item.split("=", 1) for item in cm.train_overrides(job, Path("/data"), rnn))
        assert ours["model.arch"] == "transformer" and ours["train.cpu_bf16"] == "true"
        assert ours["model.enum_block"] == "100000" and ours["train.adam_beta2"] == "0.999"
        assert {k: ours[f"transformer.{k}"] for k in sizes} == {k: str(v) for k, v in sizes.items()}
        assert not any(k.startswith("model.") and k.removeprefix("model.") in cm.MODEL and k != "model.enum_block"
                       for k in ours)  # no LSTM sizes
        # the learning rate, its decay and the stopping rule are the rnn's
        shared = {k: v for k, v in theirs.items() if k.startswith(("train.", "data.")) or k == "model.mode"}
        assert {k: ours[k] for k in shared} == shared
        assert cm.recipe(job, transformer).name == ("quickstart.yaml" if kind == "synthetic" else "transformer.yaml")
    assert cm.TRANSFORMER == {"encoder_layers": 2, "decoder_layers": 2, "width": 128, "heads": 4, "ffn": 256,
                              "dropout": 0.2, "attention_dropout": 0.1, "inf_layers": 1}
    assert cm.recipe({"kind": "mt"}, rnn).name == "rnn.yaml"
