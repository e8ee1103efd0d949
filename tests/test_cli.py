"""Command-line smoke tests: every subcommand end to end, and user errors as one line with exit code 2."""

import json

import pytest

from varattn.cli.main import main

from conftest import TINY_MODEL


def tiny_overrides(data_dir):
    model = [f"model.{k}={v}" for k, v in TINY_MODEL.items()]
    return [f"data.dir={data_dir}", "data.max_tokens=400", "train.epochs=1", "train.max_steps=3",
            "train.progress=false", "train.device=cpu", *model]


def test_prepare_train_evaluate_translate(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["prepare", "synthetic", "--out", str(data), "--pairs", "300", "--seed", "2"]) == 0
    run = tmp_path / "run"
    assert main(["train", "configs/quickstart.yaml", "--out", str(run), *tiny_overrides(data)]) == 0
    result = tmp_path / "eval.json"
    assert main(["evaluate", str(run), "--data", str(data), "--split", "test", "--json", str(result)]) == 0
    scores = json.loads(result.read_text())
    for key in ("ppl", "tokens", "sentences", "entropy", "bleu", "sacrebleu", "sacrebleu_signature"):
        assert key in scores
    source = tmp_path / "in.txt"
    lines = (data / "test.src.txt").read_text().splitlines()[:4]
    source.write_text("\n".join(lines[:2] + [""] + lines[2:]) + "\n")
    out = tmp_path / "out.txt"
    assert main(["translate", str(run), "--input", str(source), "--output", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 5
    assert out.read_text().splitlines()[2] == ""
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(run), "train.max_steps=4"]) == 0


@pytest.mark.parametrize("argv, needle", [
    (["train", "missing.yaml"], "config file not found"),
    (["evaluate", "no-such-run", "--data", "x"], "checkpoint not found"),
    (["train", "configs/quickstart.yaml", "model.mode=nonsense"], "model.mode='nonsense'"),
    (["train", "configs/quickstart.yaml", "data.dir=/nonexistent/prepared"], "/nonexistent/prepared"),
])
def test_user_errors_are_one_line_with_exit_code_2(argv, needle, capsys, tmp_path):
    assert main(argv + ([] if argv[0] != "train" or "--out" in argv else ["--out", str(tmp_path / "r")])) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_library_parameters_become_flags_on_the_command_line(tmp_path, capsys):
    """Library errors name parameters (bpe_merges=-1); the CLI's one line names the flag that sets them."""
    from varattn.cli.main import main
    from varattn.data.corpora.recipes import prepare
    from varattn.errors import UserError

    with pytest.raises(UserError, match=r"^bpe_merges=-1: must be 0"):
        prepare("synthetic", tmp_path / "lib", pairs=50, bpe_merges=-1, progress=False)
    assert main(["prepare", "synthetic", "--out", str(tmp_path / "cli"), "--pairs", "50", "--bpe-merges", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["varattn prepare: error: --bpe-merges -1: must be 0 (no BPE) or positive"]


def test_config_show_lists_every_setting_with_its_value_and_meaning(capsys):
    """`varattn config show` prints one line per dataclass field (a second code path: the dataclasses)."""
    import dataclasses

    from varattn import config as config_lib

    assert main(["config", "show", "configs/multi30k/rnn.yaml", "model.mode=vae-enum", "train.lr=3e-4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    fields = [f"{s}.{f.name}" for s in config_lib.sections()
              for f in dataclasses.fields(getattr(config_lib.Config(), s))]
    assert [line.split()[0] for line in lines] == fields
    by_key = {line.split()[0]: line.split(None, 2) for line in lines}
    assert by_key["model.mode"][1] == "vae-enum" and "vae-dirichlet" in by_key["model.mode"][2]
    assert by_key["train.lr"][1] == "0.0003"
    assert all(len(parts) == 3 for parts in by_key.values()), "every setting has a meaning"
