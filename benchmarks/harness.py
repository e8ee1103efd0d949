"""What every benchmark script shares: the record of the machine and the code, tables, child processes and
results files.

Scripts run from the repository root as ``python benchmarks/NAME.py``, so this folder is on ``sys.path``
and each of them imports ``from harness import ...``. Nothing here imports varattn, and torch only when a
machine is described, so an A/B worker that puts another version's ``src`` on ``PYTHONPATH`` still
imports that version.

- :func:`machine`, :func:`describe`, :func:`commit`: the CPU model, cores, threads, torch and device; the
  commit, ``+dirty`` when tracked files under ``src/``, ``configs/`` or ``benchmarks/`` (results aside)
  differ from it.
- :func:`fmt`, :func:`table`: a number or a dash; a markdown table.
- :func:`environment`, :func:`start`, :func:`run`, :func:`varattn`: child processes on one thread
  (``OMP_NUM_THREADS``) unless told otherwise, their output appended to a log, their wall seconds returned.
- :func:`write_results`, :func:`write_json`, :func:`write_text`: files written whole or not at all (a
  temporary file, then ``os.replace``); :func:`write_results` stamps a record with its command, commit,
  machine and date (:func:`stamp`) and ends the markdown with them (:func:`footer`).
- :func:`source_tree`: the ``src`` folder of a git commit, for the A/B scripts.
- :func:`rss_bytes`, :func:`peak_rss_bytes`, :func:`reset_peak_rss`: this process's resident memory now
  and at its peak (Linux ``/proc``), for the CPU memory probes.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable, Sequence

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SRC = ROOT / "src"
RESULTS = HERE / "results"
SHARED = ROOT.parent / "shared" / "data"  # the data folder beside the checkout


# ----------------------------------------------------------------------------- the machine and the code


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine(device=None, threads: int | None = None) -> dict:
    """The CPU, its cores, the intra-op threads (``threads`` when the figures come from child processes,
    else this process's), torch, Python, the host, the 1-minute load; ``device`` when given; the GPU when
    CUDA is there."""
    import torch

    info = {"cpu": cpu_model(), "cpu_cores": os.cpu_count(), "threads": threads or torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "host": platform.node(),
            "platform": platform.platform(), "load_average_1min": os.getloadavg()[0]}
    if device is not None:
        info["device"] = str(device)
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda,
                    gpu_count=torch.cuda.device_count())
    return info


def describe(info: dict | str) -> str:
    """One line for a :func:`machine` record (a string, as older records have, is returned as it is)."""
    if isinstance(info, str):
        return info
    line = (f"{info.get('cpu')}, {info.get('cpu_cores')} cores, {info.get('threads')} thread(s), "
            f"torch {info.get('torch')}")
    if info.get("gpu"):
        line += f", {info['gpu']} ({info.get('gpu_memory_gib')} GiB, CUDA {info.get('cuda')})"
    return line


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def commit() -> str:
    """The short hash of HEAD, ``+dirty`` when the code that runs differs from it; ``unknown`` outside git."""
    head = _git("rev-parse", "--short", "HEAD")
    if not head:
        return "unknown"
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", "src", "configs", "benchmarks",
                 ":(exclude)benchmarks/results")
    return head + ("+dirty" if dirty else "")


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M %Z")


def command_line(script: str, argv: Sequence[str] | None = None) -> str:
    """``python benchmarks/SCRIPT ARGS`` as typed from the repository root (``argv``: sys.argv[1:])."""
    argv = sys.argv[1:] if argv is None else argv
    return shlex.join(["python", f"benchmarks/{Path(script).name}", *map(str, argv)])


def rel(path) -> str:
    """``path`` relative to the repository root when it lies inside it, else absolute: as a command run
    from the root (and recorded) reads it."""
    resolved = Path(path).resolve()
    return os.path.relpath(resolved, ROOT) if resolved.is_relative_to(ROOT) else str(resolved)


# ----------------------------------------------------------------------------- numbers and tables


def fmt(value, spec: str = ".2f", none: str = "–") -> str:
    """``value`` formatted by ``spec``; ``none`` for None and NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return none
    return format(value, spec)


def table(header: Sequence[str], rows: Iterable[Sequence], align: str | None = None) -> str:
    """A markdown table; ``align`` has one letter per column, ``l`` or ``r`` (default: the first column
    left, the others right). Cells are written with ``str``."""
    align = align or "l" + "r" * (len(header) - 1)
    if len(align) != len(header):
        raise ValueError(f"align {align!r} has {len(align)} letters for {len(header)} columns")
    marks = {"l": "---", "r": "---:"}
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks[a] for a in align) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- child processes


def environment(threads: int = 1, **extra: str) -> dict[str, str]:
    """``os.environ`` with ``threads`` intra-op threads (OMP and MKL) and this checkout's ``src`` first on
    ``PYTHONPATH``; ``extra`` on top."""
    path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONPATH": path,
            **extra}


class Failed(subprocess.CalledProcessError):
    """A child that exited with another status than 0; its message names the log."""

    def __init__(self, returncode: int, command: Sequence, log: Path | None):
        super().__init__(returncode, list(command))
        self.log = log

    def __str__(self) -> str:
        where = f" — see {self.log}" if self.log else ""
        return f"{shlex.join(map(str, self.cmd))} failed (exit status {self.returncode}){where}"


def start(command: Sequence, log: Path | str | None = None, threads: int = 1, env: dict | None = None,
          cwd: Path | str | None = None, console: bool = False) -> subprocess.Popen:
    """Start ``command``. With ``log``: a ``$ command`` line, then its output, appended there; without: its
    output discarded. ``console=True`` keeps its stderr on the terminal (a progress bar, a traceback)."""
    command = [str(part) for part in command]
    stderr = None if console else subprocess.DEVNULL
    if log is None:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, env=env or environment(threads),
                                cwd=cwd)
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as handle:
        handle.write("$ " + shlex.join(command) + "\n")
        handle.flush()
        return subprocess.Popen(command, stdout=handle, stderr=None if console else subprocess.STDOUT,
                                env=env or environment(threads), cwd=cwd)


def wait(process: subprocess.Popen, log: Path | str | None = None, check: bool = True) -> int:
    """Wait for a child of :func:`start`; raise :class:`Failed` (naming ``log``) when it failed and
    ``check``."""
    code = process.wait()
    if check and code:
        raise Failed(code, process.args, Path(log) if log else None)
    return code


def run(command: Sequence, log: Path | str | None = None, threads: int = 1, env: dict | None = None,
        cwd: Path | str | None = None, console: bool = False, check: bool = True) -> float:
    """Run ``command`` as :func:`start` does and wait for it; its wall seconds."""
    started = time.perf_counter()
    wait(start(command, log, threads, env, cwd, console), log, check)
    return time.perf_counter() - started


def varattn_command(*args) -> list[str]:
    return [sys.executable, "-m", "varattn", *map(str, args)]


def varattn(*args, **options) -> float:
    """``python -m varattn ARGS`` through :func:`run` (same options); its wall seconds."""
    return run(varattn_command(*args), **options)


def source_tree(version: str, work: Path) -> Path:
    """The ``src`` folder of ``version``: a git commit unpacked once under ``work``, or ``WORKTREE`` (this
    checkout's)."""
    if version == "WORKTREE":
        return SRC
    found = subprocess.run(["git", "rev-parse", version], cwd=ROOT, check=True, capture_output=True,
                           text=True).stdout.strip()
    target = Path(work) / found[:12]
    if not (target / "src").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", found, "src"], cwd=ROOT, check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target / "src"


# ----------------------------------------------------------------------------- memory of this process


def rss_bytes() -> int:
    """Resident set size now."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """The resident set's high-water mark (``VmHWM``; ``ru_maxrss`` where /proc has none)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> bool:
    """Set the high-water mark to the resident set now (Linux >= 4.0); whether that worked."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# ----------------------------------------------------------------------------- results files


def write_text(path: Path | str, text: str) -> Path:
    """``text`` into ``path`` through a temporary file beside it and ``os.replace``: a reader sees the old
    file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
    return path


def write_json(path: Path | str, data) -> Path:
    return write_text(path, json.dumps(data, indent=1, ensure_ascii=False, default=str) + "\n")


def stamp(record: dict, command: str | None = None, device=None, threads: int | None = None) -> dict:
    """``record`` after its command (default: this process's), commit, machine and date; keys the record
    has itself win."""
    return {"command": command or command_line(sys.argv[0]), "commit": commit(),
            "machine": machine(device, threads), "date": now(), **record}


def footer(record: dict) -> str:
    """The markdown lines that name a stamped record's command, commit, machine and date."""
    return (f"- command: `{record['command']}`\n- commit: {record['commit']}\n"
            f"- machine: {describe(record['machine'])}\n- date: {record['date']}\n")


def write_results(stem: Path | str, record: dict, markdown: str | None = None, command: str | None = None,
                  device=None, threads: int | None = None) -> dict:
    """``STEM.json`` (the record, stamped) and, with ``markdown``, ``STEM.md`` (it, then :func:`footer`);
    both atomically. Returns the stamped record."""
    stem = Path(stem)
    stamped = stamp(record, command, device, threads)
    write_json(stem.with_name(stem.name + ".json"), stamped)
    if markdown is not None:
        write_text(stem.with_name(stem.name + ".md"), markdown.rstrip("\n") + "\n\n" + footer(stamped))
    return stamped
