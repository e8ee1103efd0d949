"""benchmarks/gpu_suite.sh --device cpu --tiny: every stage runs, a failing stage does not stop the rest,
and the recorded figures agree with the library (issue 16)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import MULTI30K

pytestmark = pytest.mark.slow  # end to end: the fast loop (-m "not slow") leaves it out

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    if shutil.which("bash") is None or shutil.which("timeout") is None:
        pytest.skip("the suite needs bash and coreutils' timeout")
    root = tmp_path_factory.mktemp("gpu_suite")
    data = MULTI30K
    if not MULTI30K.is_dir():  # no ../shared: a prepared synthetic corpus stands in for Multi30k
        data = root / "synthetic"
        subprocess.run([sys.executable, "-m", "varattn", "prepare", "synthetic", "--out", str(data),
                        "--pairs", "600"], check=True, capture_output=True)
    out, work = root / "out", root / "work"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHON=sys.executable)
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_suite.sh"), "--device", "cpu", "--tiny",
                           "--data", str(data), "--out", str(out), "--work", str(work), "--budget", "400",
                           "--modes", "soft no-such-mode marginal vae-enum"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {"out": out, "work": work, "record": json.loads((out / "gpu_suite.json").read_text()),
            "stdout": done.stdout}


def test_every_stage_runs_and_a_failure_stays_in_its_stage(suite):
    status = {s["stage"]: s["status"] for s in suite["record"]["stages"]}
    for name in ("install", "speed", "speed no input feed", "speed graphed", "prepare", "mode soft", "mode marginal",
                 "mode vae-enum"):
        assert status[name] == "ok", (name, status, suite["stdout"][-3000:])
    assert status["transformer speed"] == "ok" or status["transformer speed"].startswith("skipped")
    if status["transformer speed"] == "ok":
        rows = json.loads((suite["out"] / "speed_transformer.json").read_text())["rows"]
        assert sorted(r["mode"] for r in rows) == ["soft", "vae-enum"] and all(r["tokens_per_s"] > 0 for r in rows)
    assert status["mode no-such-mode"].startswith("failed")  # recorded, and the modes after it still ran
    bogus = next(m for m in suite["record"]["modes"] if m["mode"] == "no-such-mode")
    assert "no-such-mode" in bogus["error"]
    files = sorted(p.name for p in suite["out"].iterdir())
    assert len(files) <= 8 and {"gpu_suite.json", "gpu_suite.md", "speed.json", "speed.md"} <= set(files)
    assert all(p.is_file() for p in suite["out"].iterdir())  # flat: nothing deeper than $OUT


def test_no_input_feed_stage_trains_the_fused_decoder_and_reaches_the_report(suite):
    speed = json.loads((suite["work"] / "speed_no_input_feed.json").read_text())
    assert speed["model"]["input_feed"] is False
    rows = suite["record"]["no_input_feed_speed_summary"]["rows"]
    assert sorted(r["mode"] for r in rows) == ["marginal", "soft", "vae-enum", "vae-sample"]
    assert all(r["tokens_per_s"] > 0 and r["path"] != "naive" for r in rows)
    assert "without input feeding" in (suite["out"] / "gpu_suite.md").read_text()


def test_graphed_stage_sets_the_cuda_graph_and_reaches_the_report(suite):
    speed = json.loads((suite["work"] / "speed_graphed.json").read_text())
    assert speed["model"]["cuda_graph"] is True and speed["model"].get("input_feed", True) is True
    rows = suite["record"]["graphed_speed_summary"]["rows"]
    assert sorted(r["mode"] for r in rows) == ["marginal", "soft", "vae-enum", "vae-sample"]
    assert all(r["tokens_per_s"] > 0 and r["path"] != "naive" for r in rows)
    assert "from CUDA graphs" in (suite["out"] / "gpu_suite.md").read_text()


def test_speed_stage_covers_every_mode_and_the_naive_path(suite):
    from varattn.config import MODES

    rows = json.loads((suite["out"] / "speed.json").read_text())["rows"]
    assert sorted(r["mode"] for r in rows if r["path"] == "varattn") == sorted(MODES)
    assert sorted(r["mode"] for r in rows if r["path"] == "naive") == sorted(["marginal", "hard-enum", "vae-enum"])
    assert all(r["tokens_per_s"] > 0 for r in rows)


def test_modes_trained_scored_and_decoded(suite):
    from varattn.data.text.prepared import load_prepared

    folder = Path(suite["record"]["prepare"]["folder"])
    uniform = len(load_prepared(folder).tgt_vocab)
    modes = {m["mode"]: m for m in suite["record"]["modes"]}
    for name in ("soft", "marginal", "vae-enum"):
        record = modes[name]
        train, scores, decode = record["train"], record["test_scores"], record["decode"]
        assert train["steps"] > 0 and train["target_tokens"] > 0 and train["target_tokens_per_s"] > 0
        assert "train.max_seconds" in train["stopped"], train["stopped"]  # by the wall budget, not by epochs
        assert 1.0 < scores["ppl"] < uniform  # learnt something: below the uniform distribution's PPL
        assert decode["sentences"] > 0 and decode["sentences_per_s"] > 0 and 0.0 <= decode["bleu"] <= 100.0
    vae = modes["vae-enum"]["test_scores"]
    assert vae["kl"] >= 0.0 and vae["elbo_ppl"] >= vae["ppl"] * (1 - 1e-6)  # the ELBO bounds the likelihood
    assert sorted(modes["marginal"]["test_scores"]["kmax_ppl"]) == ["1", "5"]  # renormalised: may fall either side
    assert "| vae-enum |" in (suite["out"] / "gpu_suite.md").read_text()


def test_recorded_ppl_matches_varattn_evaluate(suite, tmp_path):
    folder = suite["record"]["prepare"]["folder"]
    target = tmp_path / "eval.json"
    subprocess.run([sys.executable, "-m", "varattn", "evaluate", str(suite["work"] / "runs" / "soft"), "--data",
                    folder, "--split", "test", "--no-bleu", "--device", "cpu", "--json", str(target)],
                   check=True, capture_output=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    expected = json.loads(target.read_text())["ppl"]
    recorded = next(m for m in suite["record"]["modes"] if m["mode"] == "soft")["test_scores"]["ppl"]
    assert math.isclose(recorded, expected, rel_tol=1e-4)
