"""benchmarks/multi30k_modes.py on a miniature Multi30k in the real layout (tok/, raw/): the language pair
is taken, a prepared folder with other settings is refused, each mode decodes with its recipe's settings
and gets a test BLEU equal to what `varattn evaluate` gives (issue 16)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import MULTI30K, head, load_benchmark

pytestmark = pytest.mark.slow  # end to end: the fast loop (-m "not slow") leaves it out

ROOT = Path(__file__).resolve().parents[1]


def _script():
    return load_benchmark("multi30k_modes")


@pytest.fixture(scope="module")
def mini_multi30k(tmp_path_factory) -> Path:
    """The first lines of Multi30k's train (300), val (40) and test_2016_flickr (30) in tok/ and raw/."""
    if not MULTI30K.is_dir():
        pytest.skip(f"{MULTI30K} not found: the real-data tests need ../shared beside the project")
    root = tmp_path_factory.mktemp("mini_m30k")
    (root / "tok").mkdir()
    (root / "raw").mkdir()
    for stem, count in (("train", 300), ("val", 40), ("test_2016_flickr", 30)):
        for lang in ("de", "en"):
            (root / "tok" / f"{stem}.lc.norm.tok.{lang}").write_text(
                "".join(head(MULTI30K / "tok" / f"{stem}.lc.norm.tok.{lang}", count)), encoding="utf-8")
            with gzip.open(root / "raw" / f"{stem}.{lang}.gz", "wt", encoding="utf-8") as handle:
                handle.write("".join(head(MULTI30K / "raw" / f"{stem}.{lang}.gz", count)))
    return root


def run_script(args: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "multi30k_modes.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


def test_language_pair_recipe_decoding_and_bleu_per_mode(mini_multi30k, tmp_path):
    work, results = tmp_path / "work", tmp_path / "table"
    common = ["--shared", str(mini_multi30k), "--work", str(work), "--results", str(results), "--epochs", "1",
              "--bpe-merges", "200", "--max-len", "40", "--src-lang", "en", "--tgt-lang", "de"]
    done = run_script([*common, "--modes", "soft", "vae-enum", "--beam", "3"])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    meta = json.loads((work / "data" / "meta.json").read_text())
    assert (meta["settings"]["src_lang"], meta["settings"]["tgt_lang"]) == ("en", "de")
    record = json.loads(results.with_suffix(".json").read_text())
    recipe = _script().recipe(type("A", (), {"arch": "rnn", "corpus": "multi30k"})(), "vae-enum")
    assert recipe.name == "rnn.yaml"
    for result in record["results"]:
        decoding = result["test"]["decoding"]
        assert decoding["beam"] == 3 and decoding["eos_norm"] == 3.0 and decoding["kmax"] == 0  # recipe + override
        assert 0.0 <= result["test"]["bleu"] <= 100.0
    # the recorded BLEU is the one `varattn evaluate` gives for the same best checkpoint and settings
    again = tmp_path / "again.json"
    subprocess.run([sys.executable, "-m", "varattn", "evaluate", str(work / "runs" / "soft"), "--data",
                    str(work / "data"), "--device", "cpu", "--beam", "3", "--json", str(again)], check=True,
                   capture_output=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    soft = next(r for r in record["results"] if r["mode"] == "soft")
    assert json.loads(again.read_text())["bleu"] == pytest.approx(soft["test"]["bleu"])
    table = results.with_suffix(".md").read_text()
    assert "test BLEU" in table and "| vae-enum |" in table and "en→de" in table

    # the same work folder with other preparation settings is refused, naming what differs
    refused = run_script([*common[:-4], "--src-lang", "de", "--tgt-lang", "en", "--modes", "soft"])
    assert refused.returncode != 0 and "src_lang 'en' (wanted 'de')" in refused.stderr


def test_mismatches_lists_every_difference():
    script = _script()
    meta = {"source": "multi30k", "settings": {"from_dir": "/data/m30k", "bpe_merges": 3000, "max_len": 15,
                                                "filter_eval": True, "src_lang": "de", "tgt_lang": "en"}}
    same = {"from_dir": "/data/m30k", "bpe_merges": 3000, "max_len": 15, "filter_eval": True}
    assert script.mismatches(meta, "multi30k", same) == []
    differ = script.mismatches(meta, "iwslt14", {**same, "bpe_merges": 10000, "tgt_lang": "fr"})
    assert len(differ) == 3 and any("bpe_merges 3000" in d for d in differ) and any("corpus" in d for d in differ)
