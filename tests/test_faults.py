"""Fault injection: SIGKILL at random points (inside checkpoint writes too), SIGINT/SIGTERM, a full disk
and a read-only folder. After each, resuming continues and ends with the weights and the log of an
uninterrupted run; every failure is one line with exit status 2.

Set ``FAULTS_REPORT=path.json`` to have the figures written there (benchmarks/faults.py does).
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from varattn.cli.main import main
from varattn.training import checkpoint

from conftest import TINY_MODEL

pytestmark = pytest.mark.slow  # end to end: the fast loop (-m "not slow") leaves it out

ROOT = Path(__file__).resolve().parents[1]
KILLS = int(os.environ.get("FAULTS_KILLS", "10"))  # SIGKILLs planned; benchmarks/faults.py asks for more
EPOCHS = max(2, -(-KILLS // 5))  # of 12 steps each: room for every planned kill to land somewhere new

# Runs itself under SIGKILL at the DIE_AT-th event: an optimizer step or a step of a checkpoint write
# (each tensor file, the manifest, the rename that commits it, the clean-up after it).
DRIVER = r"""
import os, signal, sys
import torch
torch.set_num_threads(1)
from varattn.training import checkpoint
die_at, calls = int(os.environ.get("DIE_AT", "0")), [0]
def dying(fn):
    def wrapped(*args, **kwargs):
        calls[0] += 1
        if calls[0] == die_at:
            with open(os.environ["DIE_LOG"], "a") as log:
                log.write(fn.__name__ + "\n")
            os.kill(os.getpid(), signal.SIGKILL)
        return fn(*args, **kwargs)
    return wrapped
for name in ("_write_file", "_commit", "clean"):
    setattr(checkpoint, name, dying(getattr(checkpoint, name)))
torch.optim.Adam.step = dying(torch.optim.Adam.step)
from varattn.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def _report(key: str, value) -> None:
    target = os.environ.get("FAULTS_REPORT")
    if not target:
        return
    path = Path(target)
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[key] = value
    path.write_text(json.dumps(data, indent=1))


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    from varattn.data.corpora.recipes import prepare

    out = tmp_path_factory.mktemp("faults") / "prepared"
    prepare("synthetic", str(out), pairs=200, seed=3, progress=False)
    return out


def write_config(folder: Path, data: Path, **train) -> Path:
    """A tiny run: EPOCHS epochs of 12 steps, validated after every step (many checkpoint writes)."""
    config = {"data": {"dir": str(data), "max_tokens": 400, "eval_max_tokens": 2000},
              "model": {"mode": "soft", **TINY_MODEL},
              "train": {"epochs": EPOCHS, "lr": 0.003, "progress": False, "device": "cpu", "validate_every": 1,
                        **train}}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def reference(small_data, tmp_path_factory, one_thread) -> dict:
    """The uninterrupted run: its final weights and log."""
    folder = tmp_path_factory.mktemp("reference")
    config = write_config(folder, small_data)
    assert main(["train", str(config), "--out", str(folder / "run")]) == 0
    return final_state(folder / "run")


def final_state(run: Path) -> dict:
    return {"weights": checkpoint.load_weights(run / "checkpoint_last.json"),
            "log": (run / "log.jsonl").read_text().splitlines(),
            "progress": checkpoint.read_meta(run / "checkpoint_last.json")["progress"]}


def same_as(reference: dict, run: Path) -> bool:
    mine = final_state(run)
    weights = mine["weights"].keys() == reference["weights"].keys() and all(
        torch.equal(mine["weights"][k], reference["weights"][k]) for k in mine["weights"])
    return weights and mine["log"] == reference["log"] and mine["progress"] == reference["progress"]


def debris(run: Path) -> list[str]:
    """Files of checkpoints that no manifest names, and temporary files."""
    named = set()
    for name in checkpoint.NAMES:
        if (run / f"{name}.json").is_file():
            named |= {e["name"] for e in checkpoint.read_meta(run / f"{name}.json")["files"].values()}
    return sorted(p.name for p in run.iterdir()
                  if p.name.endswith(".tmp") or (p.name.endswith(".safetensors") and p.name not in named))


def launch(args: list[str], die_at: int = 0, driver: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DIE_AT": str(die_at), "PYTHONPATH": str(ROOT / "src"),
           "DIE_LOG": str(Path(args[args.index("--out") + 1]).parent / "died_in.txt") if "--out" in args else ""}
    command = [sys.executable, str(driver), *args] if driver else [sys.executable, "-m", "varattn.cli.main", *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def message_lines(stderr: str) -> list[str]:
    """Lines of stderr as a terminal shows them (a progress bar erased with \\r is gone), less log
    records ("HH:MM:SS LEVEL ...")."""
    shown = [line.rsplit("\r", 1)[-1] for line in stderr.split("\n")]
    return [line for line in shown
            if line.strip() and not (len(line) > 9 and line[2] == ":" and line[5] == ":" and line[8] == " ")]


def test_sigkill_anywhere_then_resume_matches_an_uninterrupted_run(small_data, reference, tmp_path):
    """SIGKILL at random events (steps, every stage of a checkpoint write) and at random times; resume
    until the run ends; the final weights, progress and log equal the uninterrupted run's."""
    rng = random.Random(15)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    config = write_config(tmp_path, small_data)
    run = tmp_path / "run"
    kills, resumes, continued, kinds, steps = 0, 0, 0, [], [0]
    planned = KILLS
    # a step with its validation and two checkpoints is ~11 events: reach spreads the kills over the run
    reach = max(6, int(1.7 * 11 * 12 * EPOCHS / (planned - planned // 4)))
    plan = [("event", rng.randint(1, reach)) for _ in range(planned - planned // 4)]
    plan += [("timer", rng.uniform(1.5, 4.0)) for _ in range(planned // 4)]
    rng.shuffle(plan)
    for attempt in range(len(plan) + 1):
        near_end = steps[-1] >= reference["progress"]["step"] - 4  # leave the last steps to a clean finish
        kind, point = plan[attempt] if attempt < len(plan) and not near_end else ("none", 0)
        resume = ["--resume"] if (run / "config.yaml").is_file() else []
        process = launch(["train", str(config), "--out", str(run), *resume], die_at=point if kind == "event" else 0,
                         driver=driver)
        if kind == "timer":
            try:
                process.wait(timeout=point)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
        out, err = process.communicate()
        resumes += bool(resume)
        if (run / "checkpoint_last.json").is_file():
            steps.append(checkpoint.read_meta(run / "checkpoint_last.json")["progress"]["step"])
        if process.returncode == -signal.SIGKILL:
            kills += 1
            kinds.append(f"{kind}:{point if kind == 'event' else round(point, 2)}")
            continued += bool(resume)  # it got past start-up and was doing work when it died
            continue
        assert process.returncode == 0, err[-2000:]
        continued += bool(resume)
        break
    else:
        pytest.fail("the run never finished")
    identical = same_as(reference, run)
    died_in = (tmp_path / "died_in.txt").read_text().split() if (tmp_path / "died_in.txt").is_file() else []
    where = {name: died_in.count(name) for name in sorted(set(died_in))}
    where["timer"] = sum(k.startswith("timer") for k in kinds)
    _report("sigkill", {"kills": kills, "resumes": resumes, "resumes_continued": continued,
                        "identical_final_weights_and_log": identical, "kill_points": kinds,
                        "checkpoint_step_after_each_process": steps[1:], "died_in": where})
    assert sum(where.get(name, 0) for name in ("_write_file", "_commit", "clean")) > 0  # inside checkpoint writes
    assert kills >= planned // 2 and continued == resumes
    assert steps == sorted(steps)  # a checkpoint never goes back
    assert identical
    assert debris(run) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_sigint_sigterm_save_then_resume_matches(small_data, reference, tmp_path, signum, one_thread, capsys):
    config = write_config(tmp_path, small_data)
    run = tmp_path / "run"
    process = launch(["train", str(config), "--out", str(run)])
    deadline = time.time() + 120
    while not ((run / "log.jsonl").is_file() and (run / "log.jsonl").read_text().count("\n") >= 2):
        assert process.poll() is None and time.time() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    lines = message_lines(err)
    assert process.returncode == 128 + signum, err
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("varattn train: ") and f"stopped by {signal.Signals(signum).name}" in lines[0]
    stopped_at = checkpoint.read_meta(run / "checkpoint_last.json")["progress"]["step"]
    assert 0 < stopped_at < reference["progress"]["step"]
    assert main(["train", "--resume", "--out", str(run)]) == 0
    assert same_as(reference, run)
    _report(f"signal_{signal.Signals(signum).name}", {"stopped_at_step": stopped_at, "message": lines[0],
                                                       "identical_after_resume": True})


def _failing_writer(fail_at: int, code: int):
    calls = [0]
    original = checkpoint._write_file

    def writer(path, data):
        calls[0] += 1
        if calls[0] >= fail_at:
            raise OSError(code, os.strerror(code), str(path))
        return original(path, data)

    return writer


@pytest.mark.parametrize("fail_at", [1, 9])  # the first save (no checkpoint yet); a later one
def test_full_disk_while_saving_is_one_line_and_the_run_resumes(small_data, reference, tmp_path, fail_at,
                                                                monkeypatch, capsys, one_thread):
    config = write_config(tmp_path, small_data)
    run = tmp_path / "run"
    monkeypatch.setattr(checkpoint, "_write_file", _failing_writer(fail_at, errno.ENOSPC))
    assert main(["train", str(config), "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No space left on device" in err and "Traceback" not in err, err
    assert debris(run) == []
    if fail_at > 1:  # the previous checkpoint is whole and loads
        from varattn.training.runs import load_run

        assert load_run(run, torch.device("cpu")).checkpoint.name in ("checkpoint_best.json", "checkpoint_last.json")
    monkeypatch.undo()
    assert main(["train", "--resume", "--out", str(run)]) == 0
    assert same_as(reference, run)
    _report(f"enospc_patched_at_write_{fail_at}", {"message": err, "resumed_identical": True})


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs mounted for the test (root only); skipped where it cannot be mounted."""
    target = tmp_path / "disk"
    target.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(target)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root): the patched-writer test covers a full disk")
    yield target
    subprocess.run(["umount", "-l", str(target)], capture_output=True)


def _fill(folder: Path) -> Path:
    filler = folder / "filler"
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    return filler


def _one_line_error(argv: list[str], capsys) -> str:
    assert main(argv) == 2, argv
    err = capsys.readouterr().err
    lines = message_lines(err)
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_real_full_disk_and_read_only_folder(small_data, reference, small_disk, tmp_path, capsys, one_thread):
    """On a real tmpfs: fill it mid-run, then make it read-only. Train, prepare, translate, evaluate and
    align each fail with one line; the checkpoint stays loadable; freed again, the run resumes to the
    uninterrupted result."""
    messages = {}
    config = write_config(tmp_path, small_data, epochs=1)
    run = small_disk / "run"
    assert main(["train", str(config), "--out", str(run)]) == 0
    filler = _fill(small_disk)
    full_config = write_config(tmp_path / "two", small_data)
    messages["train (disk full)"] = _one_line_error(["train", str(full_config), "--resume", "--out", str(run)], capsys)
    messages["prepare (disk full)"] = _one_line_error(
        ["prepare", "synthetic", "--out", str(small_disk / "prepared"), "--pairs", "3000"], capsys)
    assert not any(p.name.startswith(".prepared") for p in small_disk.iterdir())  # nothing half-written
    source = tmp_path / "in.txt"
    source.write_text("a b c\n")
    messages["translate --output (disk full)"] = _one_line_error(
        ["translate", str(run), "--input", str(source), "--output", str(small_disk / "out.txt")], capsys)
    filler.unlink()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        messages["train (read-only)"] = _one_line_error(["train", str(full_config), "--resume", "--out", str(run)],
                                                        capsys)
        messages["prepare (read-only)"] = _one_line_error(
            ["prepare", "synthetic", "--out", str(small_disk / "p2"), "--pairs", "100"], capsys)
        messages["translate --output (read-only)"] = _one_line_error(
            ["translate", str(run), "--input", str(source), "--output", str(small_disk / "out.txt")], capsys)
        messages["evaluate --json (read-only)"] = _one_line_error(
            ["evaluate", str(run), "--data", str(small_data), "--split", "test", "--no-bleu",
             "--json", str(small_disk / "e.json")], capsys)
        messages["align --out (read-only)"] = _one_line_error(
            ["align", str(run), "--data", str(small_data), "--split", "test", "--limit", "2", "--pictures", "0",
             "--grid", "0", "--out", str(small_disk / "align")], capsys)
        from varattn.training.runs import load_run

        load_run(run, torch.device("cpu"))  # still loads, from a read-only folder
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    assert main(["train", str(full_config), "--resume", "--out", str(run)]) == 0
    assert same_as(reference, run)
    _report("real_disk", messages)
    for text in messages.values():
        assert "No space left on device" in text or "Read-only file system" in text, text
