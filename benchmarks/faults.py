"""Fault-injection figures: SIGKILL campaign, SIGINT/SIGTERM, full disk, read-only folder, bad inputs.

Runs tests/test_faults.py and tests/test_reliability.py with ``FAULTS_REPORT`` set (the tests write what
happened there) and ``FAULTS_KILLS`` (how many SIGKILLs the campaign plans), then writes
``benchmarks/results/faults.json`` and ``benchmarks/results/faults.md``.

    OMP_NUM_THREADS=1 python benchmarks/faults.py --kills 40
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import RESULTS, ROOT, environment, write_results


def run_tests(kills: int, report: Path) -> int:
    """pytest on one thread, its output on the terminal; its exit status."""
    env = environment(1, FAULTS_REPORT=str(report), FAULTS_KILLS=str(kills))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "tests/test_faults.py", "tests/test_reliability.py"]
    return subprocess.run(command, cwd=ROOT, env=env).returncode


def _short(message: str) -> str:
    """Temporary paths shortened to their last two parts, so the table reads."""
    return re.sub(r"/tmp/\S*/([^/\s]+/[^/\s:]+)", r".../\1", message).replace("|", "\\|")


def markdown(data: dict, status: int) -> str:
    kill = data.get("sigkill", {})
    lines = ["# Fault injection", "",
             "Made by `OMP_NUM_THREADS=1 python benchmarks/faults.py --kills N` (tests/test_faults.py and "
             "tests/test_reliability.py with their report switched on); pytest exit status "
             f"{status}.", "",
             "## SIGKILL at random points, then `--resume` until the run ends", "",
             "A tiny soft-attention run (synthetic corpus, 200 pairs, "
             f"{(kill.get('checkpoint_step_after_each_process') or [0])[-1]} steps, validation and "
             "checkpoints after every step). Kills land on a random event — an optimizer step, or a stage "
             "of a checkpoint write (each tensor file, the manifest, the rename that commits it, the "
             "clean-up) — or after a random time.", "",
             "| kills | resumes | resumes that continued | final weights, progress and log identical to an "
             "uninterrupted run | debris left |", "|---|---|---|---|---|",
             f"| {kill.get('kills')} | {kill.get('resumes')} | {kill.get('resumes_continued')} | "
             f"{kill.get('identical_final_weights_and_log')} | none (asserted) |", "",
             f"Kill points (event number in the process, or seconds): {', '.join(kill.get('kill_points', []))}.",
             f"Step of checkpoint_last after each process: {kill.get('checkpoint_step_after_each_process')}.",
             f"Where the processes died: {kill.get('died_in')} (`_write_file`: a tensor file or the manifest "
             "being written; `_commit`: the rename; `clean`: removing the previous files; `step`: an "
             "optimizer step; `timer`: SIGKILL from outside).", "",
             "## Signals, full disk, read-only folder", "", "| case | result | message |", "|---|---|---|"]
    for key in ("signal_SIGINT", "signal_SIGTERM"):
        if key in data:
            entry = data[key]
            lines.append(f"| {key[7:]} during training | saved at step {entry['stopped_at_step']}, exit "
                         f"{128 + (2 if key.endswith('INT') else 15)}; resumed identical: "
                         f"{entry['identical_after_resume']} | {_short(entry['message'])} |")
    for key, entry in data.items():
        if key.startswith("enospc_patched"):
            lines.append(f"| writer raises ENOSPC at file write {key.rsplit('_', 1)[1]} | exit 2; resumed "
                         f"identical: {entry['resumed_identical']} | {_short(entry['message'])} |")
    for case, message in data.get("real_disk", {}).items():
        lines.append(f"| {case}, 3 MB tmpfs | exit 2 | {_short(message)} |")
    lines += ["", "## Bad inputs: exit status 2 and one line each", "", "| input | status | message |",
              "|---|---|---|"]
    for key, entry in data.items():
        if key.startswith("bad input: "):
            lines.append(f"| {key[11:]} | {entry['status']} | {_short(entry['message'])} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=40, help="SIGKILLs the campaign plans (default 40)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.json"
        status = run_tests(args.kills, report)
        data = json.loads(report.read_text()) if report.is_file() else {}
    # the tests' report, stamped with command, commit, machine and date; faults.md ends with them
    write_results(RESULTS / "faults", data, markdown(data, status), threads=1)
    print(markdown(data, status))
    sys.exit(status)


if __name__ == "__main__":
    main()
