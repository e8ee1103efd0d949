"""Shared fixtures: small real-data samples from ../shared (skipped where it is absent) and tiny configs."""

from __future__ import annotations

import gzip
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared"
MULTI30K = SHARED / "data" / "multi30k"

TINY_MODEL = {"emb_size": 24, "enc_hidden": 16, "enc_layers": 1, "dec_hidden": 32, "dec_layers": 1,
              "attn_size": 16, "dropout": 0.0, "inf_hidden": 16, "inf_layers": 1}


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run far faster on one thread: on two busy cores, two threads mostly wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/NAME.py`` imported as a module (the benchmarks are scripts, not a package; their folder
    goes on ``sys.path``, as when a script runs, for their ``from harness import ...``)."""
    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    if str(folder) not in sys.path:
        sys.path.append(str(folder))
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def head(path: Path, lines: int) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [next(handle) for _ in range(lines)]


@pytest.fixture(scope="session")
def multi30k_sample(tmp_path_factory) -> Path:
    """A prepared folder from the first 400 training and 100 validation pairs of Multi30k (tokenised)."""
    if not MULTI30K.is_dir():
        pytest.skip(f"{MULTI30K} not found: the real-data tests need ../shared beside the project")
    from varattn.data.corpora.recipes import prepare

    root = tmp_path_factory.mktemp("m30k")
    files = {}
    for split, name, count in (("train", "train", 400), ("valid", "val", 100), ("test", "test_2016_flickr", 60)):
        for side, lang in (("src", "de"), ("tgt", "en")):
            target = root / f"{split}.{lang}"
            target.write_text("".join(head(MULTI30K / "tok" / f"{name}.lc.norm.tok.{lang}", count)), encoding="utf-8")
            files[f"{split}_{side}"] = str(target)
    out = root / "prepared"
    prepare("files", str(out), src_lang="de", tgt_lang="en", tokenize=False, lowercase=False, bpe_merges=300,
            **files)
    return out


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    from varattn.data.corpora.recipes import prepare

    out = tmp_path_factory.mktemp("synthetic") / "prepared"
    prepare("synthetic", str(out), pairs=600, seed=3)
    return out


def tiny_config(data_dir: Path, mode: str = "soft", **train):
    from varattn import config as config_lib

    settings = {"data": {"dir": str(data_dir), "max_tokens": 400, "eval_max_tokens": 2000},
                "model": {"mode": mode, "samples": 1, **TINY_MODEL},  # not the mode's defaults: tiny and fast
                "train": {"epochs": 1, "lr": 0.003, "progress": False, "device": "cpu", "warmup_steps": 0, **train}}
    return config_lib.from_dict(settings).validate()
