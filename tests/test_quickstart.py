"""The README's main job end to end, on a small synthetic corpus."""

import json

import pytest

from varattn.cli.quickstart import MODES, run_quickstart

pytestmark = pytest.mark.slow  # end to end: the fast loop (-m "not slow") leaves it out


def test_quickstart_runs_every_step(tmp_path):
    lines = []
    summary = run_quickstart(tmp_path / "qs", pairs=400, seed=2, echo=lines.append)
    assert set(summary["runs"]) == set(MODES) == {"soft", "vae-enum"}
    for mode in MODES:
        test = summary["runs"][mode]["test"]
        assert test["ppl"] > 1 and test["entropy"] >= 0 and "bleu" in test
        assert (tmp_path / "qs" / "runs" / mode / "checkpoint_best.json").is_file()
    assert "elbo_ppl" in summary["runs"]["vae-enum"]["test"]
    assert json.loads((tmp_path / "qs" / "summary.json").read_text())["runs"].keys() == summary["runs"].keys()
    text = "\n".join(lines)
    assert "exact PPL" in text and "prior entropy" in text and "summary.json" in text
