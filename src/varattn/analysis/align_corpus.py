"""The body of `varattn align-corpus`: a parallel corpus in, symmetrised word alignments out, in one
resumable job.

Stages, in order (:data:`STAGES`): **prepare** (the ``files`` recipe of :mod:`varattn.data.corpora.recipes`
on the corpus, an evenly spaced sample of it as the validation split), **train forward** and **train
reverse** (the chain (HMM) aligner, :data:`HMM_ALIGNER` = ``configs/align/hmm.yaml``, on the prepared
folder with ``data.reverse`` false and true; with two or more threads the two directions train at once, in
two processes), **align** (both runs' last checkpoints align every pair of the corpus, teacher-forced,
over the corpus's own words) and **symmetrise** (the two directions' word links combined).

The output folder holds what ``varattn align --reverse-run`` writes — ``links.align`` (the symmetrised
links, Pharaoh ``i-j``, 0-based, i a source word and j a target word of the input), ``scores.tsv``,
``tokens.txt``, the forward run's ``{prior,posterior,viterbi}.align`` (pieces) and ``.words.align``
(words), the reverse run's in ``reverse/`` — plus ``forward.align`` and ``reverse.align`` (each
direction's word links alone, both written source-target) and ``summary.json`` (written last: the job is
complete when it exists). ``work/`` keeps the job: ``job.json`` (what it was started with), the text and
the prepared folder, the two runs, each direction's word matrices, and ``stages/*.json``, one marker per
completed stage, written atomically.

Resuming: the same request again skips every stage whose marker exists, and training continues from
the run's ``checkpoint_last`` (written at every validation: the job validates every
:data:`CHECKPOINT_EVERY` steps unless ``train.validate_every`` is given), so a job killed at any moment
loses at most the steps since its last checkpoint. The prepared folder and each stage's files are
written whole into a temporary sibling and renamed. A request whose input or settings differ from the
job's is refused. Progress goes to a callback (:class:`Progress`), never to the terminal.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from varattn import stopping
from varattn.errors import UserError

STAGES = ("prepare", "train forward", "train reverse", "align", "symmetrise")
DIRECTIONS = ("forward", "reverse")

#: configs/align/hmm.yaml, embedded so that an installed package needs no file beside it (a test keeps
#: them equal)
HMM_ALIGNER = {
    "data": {"max_tokens": 4000},
    "model": {"mode": "hmm", "emb_size": 128, "enc_hidden": 32, "enc_layers": 1, "dec_hidden": 32,
              "dec_layers": 1, "attn_size": 32, "output_size": 128, "dropout": 0.1, "emission": "word",
              "transition": "jump", "jump_slope": 0.5, "jump_width": 8},
    "train": {"epochs": 3, "lr": 0.003, "decay_from_epoch": 2, "seed": 1},
}
CHECKPOINT_EVERY = 100  # steps between validations (each writes checkpoint_last) unless train.validate_every is set
ALIGN_CHUNK = 2048  # pairs aligned between two progress reports
REPORT_SECONDS = 0.5  # how often a training reports its step

# Guesses for stages not yet measured, used for the time left until better is known: seconds per pair
# to prepare and to symmetrise, and aligning one direction against training one epoch of it.
PREPARE_PER_PAIR = 4e-4
SYMMETRISE_PER_PAIR = 3e-4
ALIGN_PER_EPOCH = 0.35


@dataclass
class AlignCorpusRequest:
    """What to align and how. The corpus is ``pairs`` (a ``source ||| target`` file) or ``src`` and
    ``tgt`` (parallel files, one sentence a line); both are tokenised already (words split on spaces, as
    fast_align and eflomal read them) unless ``tokenize``."""

    out: str | os.PathLike
    pairs: str | os.PathLike | None = None
    src: str | os.PathLike | None = None
    tgt: str | os.PathLike | None = None
    recipe: str | os.PathLike | None = None  # a YAML training recipe instead of HMM_ALIGNER
    overrides: Sequence[str] = ()  # section.key=value, for both directions
    threads: int = 1  # 2 or more: the two directions train at once, threads // 2 each
    tokenize: bool = False  # Moses-tokenise raw text (links then index the tokens, see tokens.txt)
    lowercase: bool = True
    src_lang: str = "src"
    tgt_lang: str = "tgt"
    bpe_merges: int = 4000
    max_len: int = 80  # training pairs longer than this (pieces, either side) are left out of training only
    valid_pairs: int = 500  # pairs of the corpus (evenly spaced) that validation scores
    symmetrize: str = "soft-product"  # chosen on half the Hansards gold (benchmarks/results/align_methods.md)
    distribution: str | None = None  # the matrix links come from; None: the posterior
    matrices: bool = False  # also write alignments.json (every matrix; large)

    def work(self) -> Path:
        return Path(self.out) / "work"


@dataclass
class Progress:
    """One report: ``stage`` (one of :data:`STAGES`) with ``stage_fraction`` of it done, ``fraction`` of
    the whole job done (stages weighted by their estimated time), ``elapsed`` seconds in this session,
    ``remaining`` seconds estimated (None until a stage has been timed), ``detail`` (e.g. ``step 40/300``)."""

    stage: str
    stage_fraction: float
    fraction: float
    elapsed: float
    remaining: float | None
    detail: str = ""


# ----------------------------------------------------------------------------- input


def read_corpus(request: AlignCorpusRequest) -> tuple[list[str], list[str]]:
    """The corpus as parallel lines, whitespace normalised; a one-line UserError naming the file and the
    line for anything an aligner cannot take (a missing or empty side, files of different lengths)."""
    from varattn.data.text.pairs import read_pairs
    from varattn.data.textio import read_lines

    one_file, two_files = bool(request.pairs), bool(request.src and request.tgt)
    if one_file == two_files or (one_file and (request.src or request.tgt)):
        raise UserError("give the corpus once: a pairs file ('source ||| target' a line), or both a source "
                        "and a target file")
    if request.pairs:
        return read_pairs(request.pairs)
    sides = []
    for path in (request.src, request.tgt):
        lines = [" ".join(line.split()) for line in read_lines(path)]
        for number, line in enumerate(lines, 1):
            if not line:
                raise UserError(f"{path}:{number}: empty line — every line needs a sentence; remove line {number} "
                                "from both files (an aligner cannot skip a pair without shifting later lines)")
        sides.append(lines)
    src, tgt = sides
    if len(src) != len(tgt):
        (short, few), (long, many) = sorted(((request.src, len(src)), (request.tgt, len(tgt))), key=lambda s: s[1])
        raise UserError(f"{long}:{few + 1}: has no partner line — {short} ends at line {few} but {long} has "
                        f"{many} lines; parallel files need one translation per line: fix or realign them")
    return src, tgt


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def valid_indices(count: int, wanted: int) -> list[int]:
    """``wanted`` pair numbers spread evenly over ``count`` pairs (all of them when there are fewer)."""
    wanted = max(1, min(wanted, count))
    return sorted({int(k * count / wanted) for k in range(wanted)})


# ----------------------------------------------------------------------------- job folder


def _write_json(path: Path, data: dict) -> None:
    from varattn.data.textio import atomic_write_bytes

    atomic_write_bytes(path, json.dumps(data, indent=1, ensure_ascii=False).encode("utf-8"))


def _marker(work: Path, name: str) -> Path:
    return work / "stages" / f"{name}.json"


def _done(work: Path, name: str, options: dict | None = None) -> dict | None:
    """The marker of a completed stage (None when it is missing, or was made with other ``options``)."""
    path = _marker(work, name)
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    return record if options is None or record.get("options") == options else None


def _mark(work: Path, name: str, seconds: float, **extra) -> None:
    _write_json(_marker(work, name), {"stage": name, "seconds": seconds, **extra})


@contextmanager
def _locked(path: Path, wait: bool, busy: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (advisory, where the platform has flock): another job on the
    same folder is refused with ``busy`` (``wait``: waited for instead)."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): no guard
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(busy) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _training_config(request: AlignCorpusRequest, work: Path, direction: str):
    """The recipe with the request's overrides for one direction (as `varattn train RECIPE ...` reads it)."""
    from varattn import config as config_lib

    recipe = Path(request.recipe) if request.recipe else work / "recipe.yaml"
    if not request.recipe and not recipe.is_file():  # the embedded recipe as its file, read as any recipe is
        import yaml

        from varattn.data.textio import atomic_write_bytes

        atomic_write_bytes(recipe, yaml.safe_dump(HMM_ALIGNER, sort_keys=False).encode("utf-8"))
    given = {item.split("=", 1)[0] for item in request.overrides}
    ours = [f"data.dir={work.resolve() / 'data'}", f"data.reverse={'true' if direction == 'reverse' else 'false'}",
            "train.progress=false"]
    config = config_lib.load(recipe, [*request.overrides, *ours])
    if "train.validate_every" not in given and not config.train.validate_every:
        config.train.validate_every = CHECKPOINT_EVERY
    return config


def _fingerprint(request: AlignCorpusRequest, work: Path) -> dict:
    """What fixes the prepared folder and the runs: the corpus's bytes and every setting that changes them."""
    inputs = [request.pairs] if request.pairs else [request.src, request.tgt]
    return {"inputs": [sha256(path) for path in inputs],
            "data": {key: getattr(request, key) for key in ("tokenize", "lowercase", "src_lang", "tgt_lang",
                                                            "bpe_merges", "max_len", "valid_pairs")},
            "config": {section: {key: value for key, value in fields.items() if f"{section}.{key}" != "data.dir"}
                       for section, fields in _training_config(request, work, "forward").to_dict().items()}}


def _check_job(request: AlignCorpusRequest, work: Path) -> dict:
    """Start the job's record, or check that the request repeats the one that started it."""
    out = Path(request.out)
    fingerprint = _fingerprint(request, work)
    path = work / "job.json"
    if path.is_file():
        started = json.loads(path.read_text(encoding="utf-8"))
        changed = _differences(started["fingerprint"], fingerprint)
        if changed:
            raise UserError(f"{out}: holds a job started with other input or settings ({'; '.join(changed[:3])}) — "
                            "rerun the command that started it to continue, or give a new folder to --out")
        return started
    started = {"fingerprint": fingerprint, "pairs": request.pairs and str(request.pairs),
               "src": request.src and str(request.src), "tgt": request.tgt and str(request.tgt),
               "overrides": list(request.overrides), "recipe": str(request.recipe or "HMM_ALIGNER")}
    _write_json(path, started)
    return started


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:  # named as the request's fields and the config's keys
            name = f"{prefix}{key}".removeprefix("data.").removeprefix("config.")
            out.append("the corpus's content" if name == "inputs" else f"{name} {a} -> {b}")
    return out


# ----------------------------------------------------------------------------- progress

PARTS = ("prepare", "train forward", "train reverse", "align forward", "align reverse", "symmetrise")


def _stage(part: str) -> str:
    return "align" if part.startswith("align ") else part


def _other(part: str) -> str:
    kind, direction = part.split()
    return f"{kind} {DIRECTIONS[1 - DIRECTIONS.index(direction)]}"


class _Tracker:
    """Turns the parts' events into :class:`Progress` reports with the time left: measured rates where
    a part has run, the other direction's where it has not, modelled ones before anything ran. The two
    directions of a stage run at once when ``parallel``. Reports never overlap (a lock), though training
    in this process reports from a background thread."""

    def __init__(self, on_progress: Callable[[Progress], None] | None, pairs: int, parallel: bool):
        self.on_progress, self.pairs, self.parallel = on_progress, pairs, parallel
        self.started = time.perf_counter()
        self.lock = threading.Lock()
        self.recorded: dict[str, float] = {}  # part -> the seconds it took (in this session or before)
        self.running: dict[str, dict] = {}  # part -> done, total (units), rate (seconds a unit), per_epoch

    def finished(self, part: str, seconds: float) -> None:
        with self.lock:
            self.recorded[part] = seconds
        self.report(part, "done")

    def update(self, part: str, done: int, total: int, rate: float | None = None, per_epoch: int = 0,
               detail: str = "") -> None:
        with self.lock:
            self.running[part] = {"done": done, "total": max(total, 1), "rate": rate, "per_epoch": per_epoch}
        self.report(part, detail)

    def _rate(self, kind: str) -> float | None:
        rates = [state["rate"] for part, state in self.running.items() if part.startswith(kind) and state["rate"]]
        return sum(rates) / len(rates) if rates else None

    def _estimate(self, part: str) -> tuple[float | None, float | None]:
        """(seconds the part takes in all, seconds left of it); None where nothing tells yet."""
        if part in self.recorded:
            return self.recorded[part], 0.0
        state = self.running.get(part)
        done = state["done"] / state["total"] if state else 0.0
        if part == "prepare":
            whole = self.pairs * PREPARE_PER_PAIR + 1.0
            return whole, whole * (1.0 - done)
        if part == "symmetrise":
            whole = self.pairs * SYMMETRISE_PER_PAIR + 0.5
            return whole, whole * (1.0 - done)
        kind = part.split()[0]
        rate = (state or {}).get("rate") or self._rate(kind)
        like = state or self.running.get(_other(part))
        if kind == "align":
            if rate is not None:
                return self.pairs * rate, self.pairs * rate * (1.0 - done)
            train_rate = self._rate("train")
            epoch = max((s["per_epoch"] for p, s in self.running.items() if p.startswith("train")), default=0)
            if train_rate is not None and epoch:
                whole = ALIGN_PER_EPOCH * epoch * train_rate
                return whole, whole * (1.0 - done)
        elif like is not None and rate is not None:
            return like["total"] * rate, like["total"] * rate * (1.0 - done)
        if _other(part) in self.recorded:  # the other direction's time
            return self.recorded[_other(part)], self.recorded[_other(part)] * (1.0 - done)
        return None, None

    def _stage_fraction(self, part: str) -> float:
        parts = [p for p in PARTS if _stage(p) == _stage(part)]
        fractions = [1.0 if p in self.recorded else self.running[p]["done"] / self.running[p]["total"]
                     if p in self.running else 0.0 for p in parts]
        return sum(fractions) / len(fractions)

    def report(self, part: str, detail: str = "") -> None:
        if self.on_progress is None:
            return
        with self.lock:
            estimates = {p: self._estimate(p) for p in PARTS}
            remaining = None
            if all(left is not None for _, left in estimates.values()):
                remaining = estimates["prepare"][1] + estimates["symmetrise"][1]
                for kind in ("train", "align"):
                    both = [estimates[f"{kind} {d}"][1] for d in DIRECTIONS]
                    remaining += max(both) if self.parallel else sum(both)
            if all(whole is not None for whole, _ in estimates.values()):
                fraction = sum(whole - left for whole, left in estimates.values()) / sum(
                    whole for whole, _ in estimates.values())
            else:  # before training is timed the parts count alike
                fraction = sum(1.0 if p in self.recorded else self.running[p]["done"] / self.running[p]["total"]
                               if p in self.running else 0.0 for p in PARTS) / len(PARTS)
            self.on_progress(Progress(_stage(part), self._stage_fraction(part), min(max(fraction, 0.0), 1.0),
                                      time.perf_counter() - self.started, remaining, detail))


# ----------------------------------------------------------------------------- the stages


def _prepare(request: AlignCorpusRequest, work: Path, src: list[str], tgt: list[str]) -> dict:
    """The corpus and its validation sample as text files, then the ``files`` recipe into work/data."""
    from varattn.data.corpora.recipes import prepare
    from varattn.data.textio import staged_folder

    chosen = valid_indices(len(src), request.valid_pairs)
    with staged_folder(work / "text") as text:
        for name, lines in (("train.src", src), ("train.tgt", tgt), ("valid.src", [src[k] for k in chosen]),
                            ("valid.tgt", [tgt[k] for k in chosen])):
            (text / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    text = work / "text"
    return prepare("files", work / "data", train_src=text / "train.src", train_tgt=text / "train.tgt",
                   valid_src=text / "valid.src", valid_tgt=text / "valid.tgt", src_lang=request.src_lang,
                   tgt_lang=request.tgt_lang, tokenize=request.tokenize, lowercase=request.lowercase,
                   bpe_merges=request.bpe_merges, max_len=request.max_len, progress=False)


@dataclass
class Job:
    """One direction's training or alignment, as a worker (this process or a child) runs it."""

    direction: str
    threads: int
    request: AlignCorpusRequest
    config: dict | None = None  # training: Config.to_dict() for this session
    resume: bool = False
    spent: float = 0.0  # training: seconds of earlier sessions
    parent: int | None = None  # a child stops when this process is gone

    @property
    def work(self) -> Path:
        return self.request.work()


def _watch(job: Job, every: float, tick: Callable[[], None]) -> Callable[[], None]:
    """Call ``tick`` every ``every`` seconds from a background thread (and stop the process when the job
    that started this child is gone: killed, its checkpoints are atomic); returns the function that stops it."""
    finished = threading.Event()

    def loop() -> None:
        while not finished.wait(every):
            if job.parent is not None and os.getppid() != job.parent:
                os._exit(3)
            tick()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()

    def stop() -> None:
        finished.set()
        thread.join()

    return stop


def train_direction(job: Job, report: Callable[[dict], None]) -> dict:
    """Train (or resume) one direction; ``report`` gets ``{part, done, total, rate, per_epoch}`` every
    :data:`REPORT_SECONDS` from a background thread. The seconds spent are kept beside the run, so that a
    resumed job keeps to ``train.max_seconds`` in all."""
    import torch

    from varattn import config as config_lib
    from varattn.data.textio import atomic_write_bytes
    from varattn.training.trainer import Trainer

    torch.set_num_threads(job.threads)
    run_dir = job.work / "runs" / job.direction
    spent_file = _spent_path(job.work, job.direction)
    with _locked(run_dir.parent / f"{job.direction}.lock", wait=True, busy=f"{run_dir}: trained elsewhere"):
        config = config_lib.from_saved(job.config, str(run_dir)).validate(str(run_dir))
        trainer = Trainer(config, run_dir, resume=job.resume)
        per_epoch = len(trainer.batcher.batches(trainer.progress.epoch))
        total = per_epoch * config.train.epochs
        if config.train.max_steps:
            total = min(total, config.train.max_steps)
        began, first = time.perf_counter(), trainer.progress.step

        def spent() -> float:
            return job.spent + time.perf_counter() - began

        def tick() -> None:
            step = trainer.progress.step
            rate = (time.perf_counter() - began) / (step - first) if step > first else None
            report({"part": f"train {job.direction}", "done": step, "total": total, "rate": rate,
                    "per_epoch": per_epoch, "detail": f"step {step}/{total}"})
            atomic_write_bytes(spent_file, f"{spent():.3f}\n".encode())

        stop = _watch(job, REPORT_SECONDS, tick)
        try:
            summary = trainer.run()
        finally:
            stop()
            atomic_write_bytes(spent_file, f"{spent():.3f}\n".encode())
    return {**summary, "seconds_in_all": spent()}


def align_direction(job: Job, report: Callable[[dict], None]) -> dict:
    """Align every pair with one direction's last checkpoint into work/align-DIRECTION, written whole:
    each distribution's ``.align`` and ``.words.align`` (as `varattn align` names them), the chosen
    distribution's word matrices (``words.npz``) and, where asked, ``alignments.json``."""
    import torch

    from varattn.analysis import align, wordlinks
    from varattn.data.text.pharaoh import format_links
    from varattn.data.textio import staged_folder

    torch.set_num_threads(job.threads)
    began = time.perf_counter()
    run = _load(job.request, job.direction)
    src_words, tgt_words = _words(job.request, run)
    if job.direction == "reverse":
        src_words, tgt_words = tgt_words, src_words
    part, count = f"align {job.direction}", len(src_words)
    stop = _watch(job, REPORT_SECONDS, lambda: None)  # only the parent's watch
    files: dict[str, list[str]] = {}
    matrices, shapes, entropies, records, names = [], [], [], [], []
    try:
        with stopping.signals_caught():
            report({"part": part, "done": 0, "total": count, "rate": None, "detail": f"{job.direction} 0/{count}"})
            for start in range(0, count, ALIGN_CHUNK):
                pairs = align.align_words(run, src_words[start:start + ALIGN_CHUNK],
                                          tgt_words[start:start + ALIGN_CHUNK])
                if stopping.requested():
                    raise stopping.Stopped(stopping.requested(), f"stopped while aligning {job.direction} — rerun "
                                                                 "the same command to continue")
                for pair in pairs:
                    pair.index += start
                    names = list(pair.matrices)
                    for name in names:
                        files.setdefault(f"{name}.align", []).append(format_links(pair.links(name)))
                        files.setdefault(f"{name}.words.align", []).append(format_links(pair.word_links(name)))
                    chosen = wordlinks.pick(pair, job.request.distribution)
                    matrix = wordlinks.word_matrix(pair, chosen)
                    matrices.append(matrix.ravel())
                    shapes.append(matrix.shape)
                    entropies.append(pair.entropy.get("prior", pair.entropy.get("attention", math.nan)))
                    if job.request.matrices:
                        records.append(pair.to_json())
                done = min(start + ALIGN_CHUNK, count)
                report({"part": part, "done": done, "total": count, "rate": (time.perf_counter() - began) / done,
                        "detail": f"{job.direction} {done}/{count}"})
    finally:
        stop()
    with staged_folder(job.work / f"align-{job.direction}") as folder:
        for name, lines in files.items():
            (folder / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        np.savez(folder / "words.npz", matrices=np.concatenate(matrices), shapes=np.asarray(shapes, dtype=np.int64),
                 entropy=np.asarray(entropies), distribution=np.asarray(chosen))
        if job.request.matrices:
            document = {"checkpoint": str(run.checkpoint), "mode": run.config.model.mode, "distributions": names,
                        "rows": "one per target token, then one for </s> (not exported to Pharaoh)",
                        "pairs": records}
            (folder / "alignments.json").write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return {"seconds_in_all": time.perf_counter() - began}


def _child(worker: Callable[[Job, Callable[[dict], None]], dict], job: Job, queue) -> None:
    """A child process: ``worker``'s reports and its outcome go to ``queue``. It runs in a process group of
    its own, so that a Ctrl-C reaches the job alone, which then asks it to stop (SIGTERM) once."""
    os.setpgrp()
    try:
        result = worker(job, lambda event: queue.put(("progress", event)))
    except UserError as error:
        queue.put(("error", str(error)))
    except KeyboardInterrupt as error:  # SIGTERM from the job: the step in progress finished, checkpoint saved
        queue.put(("stopped", str(error)))
    except BaseException as error:  # noqa: BLE001 - told to the job, which fails with it
        queue.put(("failed", f"{type(error).__name__}: {error}"))
    else:
        queue.put(("done", result))


def _run_jobs(jobs: list[Job], worker, tracker: _Tracker, finish: Callable[[Job, dict], None], what: str) -> None:
    """Run ``worker`` on each job: both at once in two processes when there are two and the job has two
    threads or more, else one after the other here. A signal stops them at their next step with
    :class:`~varattn.stopping.Stopped` (training saves checkpoint_last first)."""
    def event(item: dict) -> None:
        tracker.update(item["part"], item["done"], item["total"], item["rate"], item.get("per_epoch", 0),
                       item.get("detail", ""))

    if len(jobs) == 2 and jobs[0].request.threads >= 2:
        for job in jobs:
            job.threads = max(1, job.request.threads // 2)
        _in_children(jobs, worker, event, finish, what)
        return
    for job in jobs:
        try:
            result = worker(job, event)
        except KeyboardInterrupt as error:  # training saved checkpoint_last
            raise stopping.Stopped(getattr(error, "signum", 2), f"stopped while {what} {job.direction} — rerun "
                                                                "the same command to continue") from None
        finish(job, result)


def _in_children(jobs: list[Job], worker, event, finish, what: str) -> None:
    import multiprocessing
    import queue as queues
    import signal

    context = multiprocessing.get_context("spawn")
    channels, processes = {}, {}
    for job in jobs:
        job.parent = os.getpid()
        channels[job.direction] = context.Queue()
        processes[job.direction] = context.Process(target=_child, args=(worker, job, channels[job.direction]),
                                                   name=f"align-corpus {what} {job.direction}")
    outcomes: dict[str, tuple[str, object]] = {}
    asked = None
    with stopping.signals_caught():
        try:
            for process in processes.values():
                process.start()
            while len(outcomes) < len(jobs):
                for job in jobs:
                    if job.direction in outcomes:
                        continue
                    try:
                        kind, payload = channels[job.direction].get(timeout=0.2)
                    except queues.Empty:
                        process = processes[job.direction]
                        if not process.is_alive() and channels[job.direction].empty():
                            outcomes[job.direction] = ("failed", f"its process ended with status {process.exitcode}")
                        continue
                    if kind == "progress":
                        event(payload)
                        continue
                    outcomes[job.direction] = (kind, payload)
                    if kind == "done":
                        finish(job, payload)
                signum = stopping.requested()
                if signum and asked is None:
                    asked = signum
                    for direction, process in processes.items():
                        if direction not in outcomes and process.pid is not None:
                            os.kill(process.pid, signal.SIGTERM)
        finally:
            for process in processes.values():
                if process.pid is None:
                    continue
                process.join(timeout=120)
                if process.is_alive():
                    process.kill()
                    process.join()
    for kind, payload in outcomes.values():
        if kind == "error":
            raise UserError(str(payload))
    failed = [f"{direction}: {payload}" for direction, (kind, payload) in outcomes.items() if kind == "failed"]
    if failed:
        raise RuntimeError(f"{what} failed — " + "; ".join(failed))
    if asked or any(kind == "stopped" for kind, _ in outcomes.values()):
        raise stopping.Stopped(asked or signal.SIGTERM, f"stopped while {what} — rerun the same command to continue")


def _spent_path(work: Path, direction: str) -> Path:
    return work / "runs" / f"{direction}.seconds"


def _train(request: AlignCorpusRequest, work: Path, tracker: _Tracker) -> None:
    jobs = []
    for direction in DIRECTIONS:
        if _done(work, f"train-{direction}"):
            continue
        config = _training_config(request, work, direction)
        run_dir = work / "runs" / direction
        resume = (run_dir / "checkpoint_last.json").is_file() or (run_dir / "config.yaml").is_file()
        spent_file = _spent_path(work, direction)
        spent = float(spent_file.read_text().strip() or 0) if resume and spent_file.is_file() else 0.0
        cap = config.train.max_seconds
        if cap and spent >= cap and (run_dir / "checkpoint_last.json").is_file():  # its budget is spent
            _mark(work, f"train-{direction}", spent, stopped=f"train.max_seconds={cap:g} spent")
            tracker.finished(f"train {direction}", spent)
            continue
        if cap:
            config.train.max_seconds = max(cap - spent, 1.0)
        jobs.append(Job(direction, request.threads, request, config.to_dict(), resume, spent))

    def finish(job: Job, summary: dict) -> None:
        seconds = summary["seconds_in_all"]
        _mark(work, f"train-{job.direction}", seconds, stopped=summary["stopped"], steps=summary["steps"],
              best=summary["best"])
        tracker.finished(f"train {job.direction}", seconds)

    if jobs:
        tracker.report(f"train {jobs[0].direction}", "starting")
    _run_jobs(jobs, train_direction, tracker, finish, "training")


def _load(request: AlignCorpusRequest, direction: str):
    from varattn.device import resolve_device
    from varattn.training.runs import load_run

    config = _training_config(request, request.work(), direction)
    return load_run(request.work() / "runs" / direction / "checkpoint_last.json", resolve_device(config.train.device))


def _words(request: AlignCorpusRequest, run) -> tuple[list[list[str]], list[list[str]]]:
    """The words every link indexes: the input's, split on spaces (or the run's tokeniser's when
    ``tokenize``), the way `varattn align` reads them."""
    from varattn.analysis.report import read_inputs

    return read_inputs(run, pairs=request.pairs, src=request.src, tgt=request.tgt,
                       pretokenized=not request.tokenize)


def _align(request: AlignCorpusRequest, work: Path, tracker: _Tracker) -> dict:
    options = {"distribution": request.distribution, "matrices": request.matrices}
    jobs = [Job(d, request.threads, request) for d in DIRECTIONS if not _done(work, f"align-{d}", options)]

    def finish(job: Job, result: dict) -> None:
        _mark(work, f"align-{job.direction}", result["seconds_in_all"], options=options)
        _marker(work, "symmetrise").unlink(missing_ok=True)
        tracker.finished(f"align {job.direction}", result["seconds_in_all"])

    _run_jobs(jobs, align_direction, tracker, finish, "aligning")
    return options


def _load_directions(work: Path, src_words, tgt_words) -> dict[str, list]:
    """Each direction's word matrices as :class:`~varattn.analysis.align.PairAlignment` over words (one
    piece per word), so that :mod:`varattn.analysis.wordlinks` links and symmetrises them as it does for
    `varattn align`."""
    from varattn.analysis.align import END, PairAlignment

    out = {}
    for direction in DIRECTIONS:
        stored = np.load(work / f"align-{direction}" / "words.npz")
        name = str(stored["distribution"])
        flat, offset, pairs = stored["matrices"], 0, []
        words = (src_words, tgt_words) if direction == "forward" else (tgt_words, src_words)
        for k, ((rows, columns), entropy) in enumerate(zip(stored["shapes"], stored["entropy"])):
            matrix = flat[offset:offset + rows * columns].reshape(rows, columns)  # [source words, target words]
            offset += rows * columns
            pieces = np.vstack([matrix.T, np.zeros((1, rows))])  # [target words + </s>, source words]
            pairs.append(PairAlignment(k, ["w"] * rows, ["w"] * columns + [END], {name: pieces},
                                       {"prior": float(entropy)}, src_words=list(words[0][k]),
                                       tgt_words=list(words[1][k])))
        out[direction] = pairs
    return out


def _symmetrise(request: AlignCorpusRequest, work: Path) -> list[Path]:
    """links.align (and scores.tsv, tokens.txt), forward.align, reverse.align, and each direction's
    exports copied into the output folder."""
    from varattn.analysis import symmetrize, wordlinks
    from varattn.data.text.pharaoh import format_links, parse_links

    out = Path(request.out)
    both = _load_directions(work, *_words(request, _load(request, "forward")))
    chosen = wordlinks.two_directions(both["forward"], both["reverse"], request.symmetrize)
    written = wordlinks.write(chosen, out / "links.align", scores_path=out / "scores.tsv")
    (out / "tokens.txt").write_text("".join(line + "\n" for line in wordlinks.tokens_lines(chosen)), encoding="utf-8")
    written.append(out / "tokens.txt")
    forward = [a.links for a in wordlinks.one_direction(both["forward"])]
    reverse = [sorted(symmetrize.transpose(a.links)) for a in wordlinks.one_direction(both["reverse"])]
    for name, links in (("forward.align", forward), ("reverse.align", reverse)):
        (out / name).write_text("".join(" ".join(f"{i}-{j}" for i, j in pair) + "\n" for pair in links),
                                encoding="utf-8")
        written.append(out / name)
    for direction, folder in (("forward", out), ("reverse", out / "reverse")):
        folder.mkdir(parents=True, exist_ok=True)
        for path in sorted((work / f"align-{direction}").iterdir()):
            if direction == "reverse" and path.name.endswith(".align"):  # written source-target, as links.align
                lines = path.read_text(encoding="utf-8").splitlines()
                (folder / path.name).write_text("".join(format_links(symmetrize.transpose(parse_links(line))) + "\n"
                                                        for line in lines), encoding="utf-8")
                written.append(folder / path.name)
            elif path.name.endswith(".align") or path.name == "alignments.json":
                shutil.copyfile(path, folder / path.name)
                written.append(folder / path.name)
    return written


# ----------------------------------------------------------------------------- the job


def align_corpus(request: AlignCorpusRequest, on_progress: Callable[[Progress], None] | None = None) -> dict:
    """Run (or continue) the whole job into ``request.out``; returns the summary written to
    ``summary.json`` (plus ``session_seconds``). ``on_progress`` gets a :class:`Progress` at every report
    of every stage (possibly from a background thread, never two at once). SIGINT or SIGTERM stops the job
    at the next step with :class:`~varattn.stopping.Stopped` (training saves its checkpoint first); the
    same request continues it."""
    import torch

    from varattn.analysis import symmetrize as sym

    if request.symmetrize not in sym.HEURISTICS:
        raise UserError(f"symmetrize {request.symmetrize!r}: choose one of {', '.join(sym.HEURISTICS)}")
    for name, least in (("threads", 1), ("valid_pairs", 1), ("bpe_merges", 0), ("max_len", 1)):
        if getattr(request, name) < least:
            raise UserError(f"{name}={getattr(request, name)}: must be at least {least}")
    src, tgt = read_corpus(request)  # a bad corpus stops here, before anything is written
    out, work = Path(request.out), request.work()
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder — give a folder to --out")
    if out.is_dir() and any(out.iterdir()) and not (work / "job.json").is_file():
        raise UserError(f"{out}: the folder is not empty and holds no align-corpus job — give a new or empty "
                        "folder to --out")
    threads = torch.get_num_threads()
    busy = f"{out}: another align-corpus job is running on this folder — wait for it, or give another --out"
    work.mkdir(parents=True, exist_ok=True)
    try:
        with _locked(work / "lock", wait=False, busy=busy):
            return _run(request, work, src, tgt, on_progress)
    finally:
        torch.set_num_threads(threads)


def _run(request: AlignCorpusRequest, work: Path, src: list[str], tgt: list[str], on_progress) -> dict:
    started = time.perf_counter()
    job = _check_job(request, work)
    tracker = _Tracker(on_progress, len(src), parallel=request.threads >= 2)
    for part in ("prepare", "train forward", "train reverse"):  # done in an earlier session
        record = _done(work, part.replace(" ", "-"))
        if record:
            tracker.recorded[part] = record["seconds"]
    if not _done(work, "prepare"):
        tracker.report("prepare", f"{len(src)} pairs")
        began = time.perf_counter()
        report = _prepare(request, work, src, tgt)
        _mark(work, "prepare", time.perf_counter() - began, splits=report.get("splits"), vocab=report.get("vocab"))
        tracker.finished("prepare", time.perf_counter() - began)
    _train(request, work, tracker)
    options = _align(request, work, tracker)
    for direction in DIRECTIONS:
        tracker.recorded[f"align {direction}"] = _done(work, f"align-{direction}")["seconds"]

    symmetrised = {**options, "symmetrize": request.symmetrize}
    summary_path = Path(request.out) / "summary.json"
    if not _done(work, "symmetrise", symmetrised) or not summary_path.is_file():
        tracker.report("symmetrise", request.symmetrize)
        began = time.perf_counter()
        files = _symmetrise(request, work)
        _mark(work, "symmetrise", time.perf_counter() - began, options=symmetrised)
        tracker.finished("symmetrise", time.perf_counter() - began)
        _write_json(summary_path, _summary(request, work, job, files))
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    summary["session_seconds"] = time.perf_counter() - started
    return summary


def _summary(request: AlignCorpusRequest, work: Path, job: dict, files: list[Path]) -> dict:
    stages = {part: _done(work, part.replace(" ", "-")) for part in PARTS}
    with (Path(request.out) / "links.align").open(encoding="utf-8") as links:
        count = sum(1 for _ in links)
    return {"pairs": count, "input": {k: job[k] for k in ("pairs", "src", "tgt") if job.get(k)},
            "recipe": job["recipe"], "overrides": job["overrides"], "symmetrize": request.symmetrize,
            "distribution": request.distribution or "posterior", "threads": request.threads,
            "seconds": {part: record["seconds"] for part, record in stages.items()},
            "training": {d: {k: stages[f"train {d}"].get(k) for k in ("steps", "stopped", "best")} for d in DIRECTIONS},
            "runs": {d: str(work / "runs" / d) for d in DIRECTIONS},
            "files": sorted(str(p) for p in files) + [str(Path(request.out) / "summary.json")]}
