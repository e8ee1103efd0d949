"""Issue 25, "Rough edges a new user hits": one test (or a few) per item, driving the CLI (and the page's
JSON API) with the issue's inputs and checking the exit status, the one line, and that nothing is lost."""

from __future__ import annotations

import errno
import io
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from varattn.cli.main import main

from conftest import TINY_MODEL, tiny_config

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART_YAML = ROOT / "configs" / "quickstart.yaml"
ZERO_WIDTH = "\u200b\u200b\ufeff"

# Runs the CLI, sending itself SIGTERM as the N-th call of one function begins (env SIGTERM_AT =
# "module:function:N"): a real signal, delivered at a known point of the work.
DRIVER = r"""
import importlib, os, signal, sys
import torch
torch.set_num_threads(1)
module_name, function, at = os.environ["SIGTERM_AT"].split(":")
module = importlib.import_module(module_name)
original, calls = getattr(module, function), [0]
def wrapped(*args, **kwargs):
    calls[0] += 1
    if calls[0] == int(at):
        os.kill(os.getpid(), signal.SIGTERM)
    return original(*args, **kwargs)
setattr(module, function, wrapped)
from varattn.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def message_lines(stderr: str) -> list[str]:
    """What a terminal shows of stderr, less progress bars (erased with \\r) and log records."""
    shown = [line.rsplit("\r", 1)[-1] for line in stderr.split("\n")]
    return [line for line in shown if line.strip() and not re.match(r"\d\d:\d\d:\d\d (INFO|WARNING|DEBUG) ", line)]


def one_line(argv: list[str], capsys, status: int = 2) -> str:
    """Run the CLI in-process; it must exit with ``status`` and one line on stderr, no traceback."""
    assert main(argv) == status, argv
    err = capsys.readouterr().err
    lines = message_lines(err)
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def run(synthetic_data, tmp_path_factory, one_thread) -> Path:
    """A tiny vae-enum run, scored in small batches (so evaluation and alignment take several)."""
    from varattn.training.trainer import train

    config = tiny_config(synthetic_data, "vae-enum", epochs=1)
    config.data.eval_max_tokens = 150
    folder = tmp_path_factory.mktemp("rough") / "run"
    train(config, folder)
    return folder


def launch(args: list[str], sigterm_at: str, cwd: Path) -> subprocess.CompletedProcess:
    driver = cwd / "driver.py"
    driver.write_text(DRIVER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src"), "SIGTERM_AT": sigterm_at}
    done = subprocess.run([sys.executable, str(driver), *args], env=env, capture_output=True, timeout=300, cwd=cwd)
    # decoded by hand: text=True would turn a progress bar's \r into line breaks
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


# --- 1. a model or batch that cannot fit is refused before allocation ---------------------------------


def test_1_a_model_too_big_is_refused_with_its_size(synthetic_data, tmp_path, capsys):
    out = tmp_path / "run"
    line = one_line(["train", str(QUICKSTART_YAML), "--out", str(out), f"data.dir={synthetic_data}",
                     "model.emb_size=1000000000"], capsys)
    count = int(re.search(r"a model of ([\d,]+) parameters", line).group(1).replace(",", ""))
    vocab = json.loads((synthetic_data / "meta.json").read_text())["vocab"]
    assert count > 1_000_000_000 * (vocab["src"] + vocab["tgt"])  # the two embeddings alone
    assert "TiB" in line and "available" in line and "model.emb_size" in line
    assert not out.exists()  # refused before anything was made


def test_1_a_training_batch_too_big_is_refused(synthetic_data, tmp_path, capsys, monkeypatch):
    from varattn import memory

    monkeypatch.setattr(memory, "available_bytes", lambda device: 4 * 2**20)  # a 4 MiB machine
    config = tmp_path / "c.yaml"
    settings = {"data": {"dir": str(synthetic_data), "max_tokens": 10**6},
                "model": {"mode": "soft", **TINY_MODEL}, "train": {"device": "cpu", "progress": False}}
    config.write_text(yaml.safe_dump(settings))
    line = one_line(["train", str(config), "--out", str(tmp_path / "run")], capsys)
    targets = (synthetic_data / "train.tgt.txt").read_text(encoding="utf-8").splitlines()
    padded = len(targets) * (max(len(t.split()) for t in targets) + 1)  # one batch holds the whole split
    assert f"a training batch of {padded:,} padded target tokens" in line and "data.max_tokens" in line


def test_1_a_beam_too_wide_is_refused(run, tmp_path, capsys):
    source = tmp_path / "in.txt"
    source.write_text("me fabon lagipul .\n")
    line = one_line(["translate", str(run), "--input", str(source), "--beam", str(10**12), "--device", "cpu"],
                    capsys)
    assert "decoding 1,000,000,000,000 beam rows" in line and "--beam" in line


# --- 2. nan is a float, but not finite ---------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["nan", "NaN", "inf", "-inf", ".nan"])
def test_2_non_finite_learning_rate(spelling, synthetic_data, capsys):
    line = one_line(["train", str(QUICKSTART_YAML), f"data.dir={synthetic_data}", f"train.lr={spelling}"], capsys)
    assert "train.lr" in line and "not a finite number" in line and "should be float" not in line


# --- 3. SIGTERM during evaluate, translate --output, align: the complete part kept, one line ----------


@pytest.mark.slow
def test_3_sigterm_during_evaluate_keeps_the_scored_batches(run, synthetic_data, tmp_path):
    from varattn.data.text.batching import TokenBatcher
    from varattn.data.text.prepared import load_prepared

    results = tmp_path / "results.json"
    done = launch(["evaluate", str(run), "--data", str(synthetic_data), "--split", "test", "--device", "cpu",
                   "--json", str(results)], "varattn.tasks.translation_scores:collate:2", tmp_path)
    lines = message_lines(done.stderr)
    assert done.returncode == 143 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("varattn evaluate: stopped by SIGTERM after scoring")
    written = json.loads(results.read_text())
    split = load_prepared(synthetic_data).split("test")
    batches = TokenBatcher(split.src_lengths, split.tgt_lengths, 150, shuffle=False).batches(0)
    assert len(batches) > 2
    assert written["sentences"] == len(batches[0]) + len(batches[1]) < len(split)  # the batch in progress finished
    assert "partial" in written and "bleu" not in written and math.isfinite(written["ppl"])
    assert f"{written['sentences']} of {len(split)}" in lines[0] and "partial" in done.stdout


def test_3_evaluate_limit_scores_the_first_pairs(run, synthetic_data, capsys):
    from varattn.data.text.prepared import load_prepared

    assert main(["evaluate", str(run), "--data", str(synthetic_data), "--limit", "7", "--no-bleu",
                 "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    split = load_prepared(synthetic_data).split("test")
    tokens = int(split.tgt_lengths[:7].sum()) + 7  # each reference and its </s>
    assert re.search(r"^sentences\s+7$", out, re.M) and re.search(rf"^tokens\s+{tokens}$", out, re.M), out


@pytest.mark.slow
def test_3_sigterm_during_translate_output_keeps_the_complete_lines(run, synthetic_data, tmp_path):
    sources = [" ".join(line.split()[:3]) for line in
               (synthetic_data / "test.src.txt").read_text(encoding="utf-8").splitlines()[:40]]
    source = tmp_path / "in.txt"
    source.write_text("\n".join(sources) + "\n")
    whole = tmp_path / "whole.txt"
    assert main(["translate", str(run), "--input", str(source), "--output", str(whole), "--device", "cpu",
                 "--batch-tokens", "12"]) == 0
    target = tmp_path / "out.txt"
    done = launch(["translate", str(run), "--input", str(source), "--output", str(target), "--device", "cpu",
                   "--batch-tokens", "12"], "varattn.decoding.translate:beam_search:2", tmp_path)
    lines = message_lines(done.stderr)
    assert done.returncode == 143 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert not target.exists()
    partial = Path(f"{target}.partial").read_text().splitlines()
    assert 0 < len(partial) < len(sources) and f"after {len(partial)} of {len(sources)} lines" in lines[0]
    assert partial == whole.read_text().splitlines()[:len(partial)]  # exactly what the whole run wrote
    assert not list(tmp_path.glob(".out.txt*"))


@pytest.mark.slow
def test_3_sigterm_during_align_keeps_the_complete_pairs(run, synthetic_data, tmp_path):
    from varattn.data.text.batching import TokenBatcher
    from varattn.data.text.prepared import load_prepared

    out = tmp_path / "align"
    done = launch(["align", str(run), "--data", str(synthetic_data), "--split", "test", "--out", str(out),
                   "--pictures", "0", "--grid", "0", "--device", "cpu"], "varattn.analysis.align:collate:2", tmp_path)
    lines = [line for line in message_lines(done.stderr) if not line.startswith("warning:")]  # the tiny run's
    assert done.returncode == 143 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    kept = json.loads((out / "alignments.json").read_text())["pairs"]
    split = load_prepared(synthetic_data).split("test")
    batches = TokenBatcher(split.src_lengths, split.tgt_lengths, 150, shuffle=False).batches(0)  # one chunk
    done_pairs = set(batches[0].tolist()) | set(batches[1].tolist())  # the batch in progress finished
    complete = next(i for i in range(len(split)) if i not in done_pairs)  # the prefix they make whole
    assert summary["pairs"] == len(kept) == complete < len(split) and "partial" in summary
    assert [pair["index"] for pair in kept] == list(range(complete))
    assert f"after aligning {complete} of {len(split)} pairs" in lines[0]
    assert len((out / "prior.align").read_text().splitlines()) == complete


# --- 4. a stopped run says why ----------------------------------------------------------------------


def _summary(capsys) -> dict:
    out = capsys.readouterr().out
    return json.loads(out[: out.rindex("}") + 1])


@pytest.mark.parametrize("setting, reason", [("train.max_steps=2", "train.max_steps=2 reached"),
                                             ("train.max_seconds=0.001", "time budget train.max_seconds=0.001"),
                                             ("train.epochs=1", "all train.epochs=1 epochs done")])
def test_4_the_summary_says_why_training_stopped(setting, reason, synthetic_data, tmp_path, capsys, one_thread):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"data": {"dir": str(synthetic_data), "max_tokens": 400},
                                      "model": {"mode": "soft", **TINY_MODEL},
                                      "train": {"device": "cpu", "progress": False, "epochs": 2}}))
    assert main(["train", str(config), "--out", str(tmp_path / "run"), setting]) == 0
    assert reason in _summary(capsys)["stopped"]


# --- 5. zero-width characters are normalised away ----------------------------------------------------


def test_5_prepare_drops_a_pair_of_only_format_characters_and_counts_them(tmp_path, capsys):
    train_src = ["ein hund", ZERO_WIDTH, "eine\u200b katze", "das haus"]
    train_tgt = ["a dog", "x", "a cat", "the\ufeff house"]
    files = {}
    for name, lines in (("train.src", train_src), ("train.tgt", train_tgt), ("valid.src", ["ein hund"]),
                        ("valid.tgt", ["a dog"])):
        files[name] = tmp_path / name
        files[name].write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "prepared"
    assert main(["prepare", "files", "--train-src", str(files["train.src"]), "--train-tgt", str(files["train.tgt"]),
                 "--valid-src", str(files["valid.src"]), "--valid-tgt", str(files["valid.tgt"]),
                 "--out", str(out)]) == 0
    meta = json.loads((out / "meta.json").read_text())
    expected = sum(1 for line in train_src + train_tgt for ch in line if ch in "\u200b\ufeff")
    assert meta["splits"]["train"]["format_chars_removed"] == expected == 5
    assert meta["splits"]["train"]["dropped_empty"] == 1 and meta["splits"]["train"]["empty_lines"] == [2]
    tokens = [t for side in ("src", "tgt") for t in json.loads((out / f"vocab.{side}.json").read_text())["tokens"]]
    assert not any(ch in token for token in tokens for ch in "\u200b\ufeff")
    assert "katze" in tokens and "house" in tokens
    assert "5 invisible format characters removed" in capsys.readouterr().out


def test_5_translate_refuses_a_line_of_only_format_characters(run, tmp_path, capsys):
    source = tmp_path / "in.txt"
    source.write_text("me fabon .\n" + ZERO_WIDTH + "\n", encoding="utf-8")
    target = tmp_path / "out.txt"
    line = one_line(["translate", str(run), "--input", str(source), "--output", str(target), "--device", "cpu"],
                    capsys)
    assert f"{source}:2: only invisible format characters" in line and "U+200B" in line and "U+FEFF" in line
    assert not target.exists()


def test_5_the_api_and_the_page_refuse_only_format_characters(run):
    import varattn
    from varattn.serve import create_app

    client = create_app(varattn.load(run, device="cpu")).test_client()
    for route, body in (("/api/translate", {"source": ZERO_WIDTH}),
                        ("/api/align", {"source": ZERO_WIDTH, "target": "ze yuha ."})):
        response = client.post(route, json=body)
        assert response.status_code == 400, response.get_json()
        assert "only invisible format characters" in response.get_json()["error"]
    fine = client.post("/api/translate", json={"source": "me\u200b fabon ."}).get_json()
    assert fine["source_tokens"] == ["me", "fabon", "."]


# --- 6. the JSON API refuses unknown keys; a slow request does not block the rest --------------------


def test_6_unknown_keys_are_refused(run):
    import varattn
    from varattn.serve import ACCEPTED, create_app

    client = create_app(varattn.load(run, device="cpu")).test_client()
    response = client.post("/api/translate", json={"source": "me fabon .", "foo": 1})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert "'foo'" in error and all(key in error for key in ACCEPTED["translate"])
    response = client.post("/api/align", json={"source": "me fabon .", "target": "ze .", "beam": 2})
    assert response.status_code == 400 and "'beam'" in response.get_json()["error"]


class _SlowModel:
    """A model whose translations take two seconds (the page, /api/info must not wait for them)."""

    def __init__(self, model):
        self._model = model

    def __getattr__(self, name):
        return getattr(self._model, name)

    def translate(self, *args, **kwargs):
        time.sleep(2.0)
        return self._model.translate(*args, **kwargs)


@pytest.mark.slow
def test_6_a_slow_request_does_not_block_the_others(run, capsys):
    import varattn
    from varattn.cli.main import build_parser
    from varattn.serve import make_server

    server = make_server(_SlowModel(varattn.load(run, device="cpu")), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        slow = threading.Thread(target=lambda: urllib.request.urlopen(urllib.request.Request(
            f"{base}/api/translate", data=b'{"source": "me fabon ."}',
            headers={"Content-Type": "application/json"}), timeout=60).read())
        slow.start()
        time.sleep(0.3)
        started = time.perf_counter()
        info = json.loads(urllib.request.urlopen(f"{base}/api/info", timeout=60).read())
        waited = time.perf_counter() - started
        assert slow.is_alive() and waited < 1.5 and info["mode"] == "vae-enum"
        slow.join(60)
    finally:
        server.shutdown()
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "any number at once" in help_text and "one at a time" in help_text


# --- 7. short output: prepare's summary, evaluate's legend, the quick start's lines -----------------


def test_7_prepare_prints_a_short_summary(tmp_path, capsys):
    out = tmp_path / "prepared"
    assert main(["prepare", "synthetic", "--out", str(out), "--pairs", "200"]) == 0
    printed = capsys.readouterr().out.splitlines()
    meta = json.loads((out / "meta.json").read_text())
    assert len(printed) <= 6
    for name, stats in meta["splits"].items():
        assert any(line.startswith(f"{name}: {stats['pairs']} pairs") for line in printed), printed
    assert f"vocabulary: src {meta['vocab']['src']}, tgt {meta['vocab']['tgt']}" in printed
    assert printed[-1].startswith(f"prepared data written to {out}") and "meta.json" in printed[-1]


def test_7_evaluate_explains_its_table(run, synthetic_data, capsys):
    assert main(["evaluate", str(run), "--data", str(synthetic_data), "--limit", "5", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    for key in ("ppl", "elbo_ppl", "kl", "entropy", "aer", "bleu", "sacrebleu"):
        assert re.search(rf"^  {re.escape(key)}\s+\S", out, re.M), (key, out)


def test_7_the_quick_start_prints_no_decoding_dump(tmp_path, monkeypatch, one_thread):
    from varattn.cli import quickstart

    recipe = json.loads(json.dumps(quickstart.QUICKSTART))
    recipe["model"].update(TINY_MODEL)
    recipe["train"].update(epochs=1, device="cpu", progress=False)
    monkeypatch.setattr(quickstart, "QUICKSTART", recipe)
    lines: list[str] = []
    quickstart.run_quickstart(tmp_path / "qs", pairs=200, echo=lambda text: lines.extend(text.splitlines()))
    assert not any("decoding" in line and "[" in line for line in lines), lines
    for mode in quickstart.MODES:
        assert any(line.startswith(f"  {mode}: exact PPL") for line in lines)
        saved = json.loads((tmp_path / "qs" / "runs" / mode / "eval_test.json").read_text())
        assert "decoding" in saved  # the settings are kept, in the file


# --- 8. the README's Transformer block shows its comparison ------------------------------------------


def test_8_readme_transformer_block_prints_and_asserts_the_comparison(capsys):
    heading = "## Latent alignment in a Transformer"
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```python\n(.*?)```", text.split(heading, 1)[1], re.S).group(1)
    assert "assert torch.allclose(marginal, brute_force" in block
    namespace = {"__name__": "readme_transformer"}
    exec(compile(block, "README.md", "exec"), namespace)
    difference = float((namespace["marginal"] - namespace["brute_force"]).detach().abs().max())
    assert f"largest difference {difference:.1e}" in capsys.readouterr().out


# --- 9. full disk and missing folders ----------------------------------------------------------------


class _FullDisk(io.StringIO):
    def write(self, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_9_a_full_disk_during_translate_output_leaves_no_file(run, tmp_path, capsys, monkeypatch):
    import builtins

    from varattn.cli import main as cli

    source = tmp_path / "in.txt"
    source.write_text("me fabon .\n")
    target = tmp_path / "out.txt"
    real_open = builtins.open
    monkeypatch.setattr(cli, "open", lambda path, *a, **k: _FullDisk() if str(path).endswith(".tmp")
                        else real_open(path, *a, **k), raising=False)
    line = one_line(["translate", str(run), "--input", str(source), "--output", str(target), "--device", "cpu"],
                    capsys)
    assert line.startswith(f"varattn translate: error: {target}: No space left on device")
    assert not target.exists() and list(tmp_path.iterdir()) == [source]
    target.write_text("the previous translations\n")
    one_line(["translate", str(run), "--input", str(source), "--output", str(target), "--device", "cpu"], capsys)
    assert target.read_text() == "the previous translations\n"  # untouched


def test_9_a_full_disk_at_the_first_checkpoint_says_there_was_none(synthetic_data, tmp_path, capsys, monkeypatch):
    from varattn.training import checkpoint

    def full(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(checkpoint, "_write_file", full)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"data": {"dir": str(synthetic_data), "max_tokens": 400},
                                      "model": {"mode": "soft", **TINY_MODEL},
                                      "train": {"device": "cpu", "progress": False, "max_steps": 1}}))
    line = one_line(["train", str(config), "--out", str(tmp_path / "run")], capsys)
    assert "no checkpoint_best was written yet" in line and "unchanged" not in line


def test_9_output_into_a_missing_folder_names_the_folder(run, synthetic_data, tmp_path, capsys):
    source = tmp_path / "in.txt"
    source.write_text("me fabon .\n")
    missing = tmp_path / "no" / "such"
    line = one_line(["translate", str(run), "--input", str(source), "--output", str(missing / "f.txt")], capsys)
    assert f"the folder {missing} does not exist" in line and "No such file" not in line
    line = one_line(["evaluate", str(run), "--data", str(synthetic_data), "--json", str(missing / "r.json")], capsys)
    assert f"the folder {missing} does not exist" in line


# --- 10. align --html draws a limited number of pairs; flat rows are flagged --------------------------


def test_10_html_report_draws_a_limited_number_and_says_so(run, synthetic_data, tmp_path, capsys):
    from varattn.cli.main import build_parser

    assert build_parser().parse_args(["align", "r", "--out", "o"]).html_limit == 100
    report = tmp_path / "report.html"
    assert main(["align", str(run), "--data", str(synthetic_data), "--out", str(tmp_path / "align"),
                 "--pictures", "0", "--grid", "0", "--html", str(report), "--html-limit", "3",
                 "--no-translate", "--device", "cpu"]) == 0
    total = len((synthetic_data / "test.src.txt").read_text().splitlines())
    last = capsys.readouterr().out.splitlines()[-1]
    assert f"report: {report} (3 of {total} pairs drawn; --html-limit 0 draws all)" in last
    assert report.read_text().count("data:image/png;base64,") == 3


def test_10_near_uniform_rows_are_flagged_in_the_picture():
    from varattn.analysis.align import PairAlignment
    from varattn.analysis.pictures import near_uniform_rows, pair_figure

    rng = np.random.default_rng(0)
    sharp = np.eye(5)[[0, 2, 4]] * 0.96 + 0.01
    flat = np.full((2, 5), 0.2) + rng.uniform(-0.01, 0.01, (2, 5))
    matrix = np.concatenate([sharp, flat / flat.sum(-1, keepdims=True)])
    entropy = [-sum(p * math.log(p) for p in row if p > 0) for row in matrix]
    expected = [h >= 0.9 * math.log(5) for h in entropy]
    assert near_uniform_rows(matrix).tolist() == expected == [False, False, False, True, True]
    pair = PairAlignment(0, list("abcde"), ["x", "y", "z", "w", "</s>"], {"prior": matrix}, {"prior": 0.0})
    figure = pair_figure(pair)
    texts = [t.get_text() for ax in figure.axes for t in ax.texts]
    captions = [ax.get_xlabel() for ax in figure.axes]
    assert texts.count(" ≈ uniform") == 2
    assert f"colours 0 (black) to {matrix.max():.2f} (white)" in captions


# --- 11. the README's word-alignment block runs as written (at tiny sizes) ---------------------------


@pytest.mark.slow
def test_11_readme_word_alignment_block_runs(tmp_path, monkeypatch, one_thread, capsys):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", text.split("## Word alignment", 1)[1], re.S).group(1)
    commands = [c for c in block.replace("\\\n", " ").splitlines() if c.strip() and not c.startswith("#")]
    monkeypatch.chdir(tmp_path)
    tiny = [f"model.{key}={value}" for key, value in TINY_MODEL.items()]
    for command in commands:
        if not command.startswith("varattn "):
            subprocess.run(command, shell=True, check=True, cwd=tmp_path, executable="/bin/bash")
            continue
        argv = shlex.split(command)[1:]
        if argv[0] == "prepare":
            argv[argv.index("--pairs") + 1] = "120"
        if argv[0] == "train":
            argv[1] = str(ROOT / argv[1])
            argv += tiny + ["train.epochs=1", "train.device=cpu", "train.progress=false"]
        assert main(argv) == 0, command
    pairs = (tmp_path / "corpus.txt").read_text(encoding="utf-8").splitlines()
    assert pairs and all(" ||| " in pair for pair in pairs)
    links = (tmp_path / "align" / "links.align").read_text().splitlines()
    probs = (tmp_path / "probs.txt").read_text().splitlines()
    assert len(links) == len(pairs) == len(probs)
    assert [len(line.split()) for line in links] == [len(line.split()) for line in probs]


# --- 12. an empty config is refused; the page's placeholder comes from the run's data ----------------


@pytest.mark.parametrize("content", ["", "# nothing but a comment\n", "{}\n"])
def test_12_an_empty_config_is_refused(content, tmp_path, capsys):
    config = tmp_path / "empty.yaml"
    config.write_text(content)
    line = one_line(["train", str(config), "--out", str(tmp_path / "run")], capsys)
    assert f"{config}: the config is empty" in line and "configs/quickstart.yaml" in line
    assert not (tmp_path / "run").exists()


def test_12_the_page_placeholder_is_from_the_runs_data(run, synthetic_data):
    import html

    import varattn
    from varattn.serve import create_app

    client = create_app(varattn.load(run, device="cpu")).test_client()
    page = client.get("/").get_data(as_text=True)
    source = (synthetic_data / "valid.src.txt").read_text(encoding="utf-8").splitlines()[0]
    reference = (synthetic_data / "valid.ref.tgt").read_text(encoding="utf-8").splitlines()[0]
    assert f'placeholder="{html.escape(source)}"' in page and f'placeholder="{html.escape(reference)}"' in page
    assert "ein hund" not in page
    assert client.get("/api/info").get_json()["example"] == {"source": source, "reference": reference}


# --- 13. the suite names its slowest tests ----------------------------------------------------------


def test_13_pytest_reports_the_slowest_tests():
    import tomllib

    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    assert re.search(r"--durations=\d+", options)
