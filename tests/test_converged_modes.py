"""benchmarks/converged_modes.py: the job queue (grid first, seeds at the grid's winning learning rate)
and the table's mean ± sd (issue 16)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]


def load():
    spec = importlib.util.spec_from_file_location("converged_modes", ROOT / "benchmarks" / "converged_modes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seeds_wait_for_the_grid_and_take_its_best_learning_rate():
    cm = load()
    args = SimpleNamespace(modes=["soft", "vae-enum"], seeded=["soft", "vae-enum"])
    names = [j["name"] for j in cm.jobs(args, {})]
    assert names == ["syn-soft", "syn-vae-enum"] + [f"{m}-lr{lr:g}-s1" for m in args.modes for lr in cm.LRS]
    # soft's grid is complete (the larger rate wins); vae-enum's is not: only soft gets seeds
    results = {"soft-lr0.001-s1": {"lr": 0.001, "best_metric": 9.5},
               "soft-lr0.003-s1": {"lr": 0.003, "best_metric": 8.7},
               "vae-enum-lr0.001-s1": {"lr": 0.001, "best_metric": 7.0}}
    seeds = [j for j in cm.jobs(args, results) if j["seed"] > 1]
    assert [(j["mode"], j["lr"], j["seed"]) for j in seeds] == [("soft", 0.003, 2), ("soft", 0.003, 3)]


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
