"""One trainer for every mode: Adam, clipping, learning-rate halving, validation, checkpoints, resume.

A run directory holds ``config.yaml``, ``data/`` (vocabularies, BPE codes and the preprocessing
pipeline, so a run translates on its own), ``checkpoint_last.*`` and ``checkpoint_best.*``, and
``log.jsonl`` with one record per validation. Resuming restores weights, optimizer moments, the
learning rate, every RNG state and the position in the epoch's batch order, so a resumed run repeats
an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from varattn import memory
from varattn.training import checkpoint
from varattn import config as config_lib
from varattn.training import distributed
from varattn.config import Config
from varattn.data.textio import atomic_write_bytes
from varattn.device import autocast as device_autocast, cpu_has_bf16, resolve_device
from varattn.errors import UserError
from varattn.latent import MODE_RECORDS, LatentOutput, get_mode
from varattn.tasks.base import task_for

log = logging.getLogger("varattn")

#: the clock of train.max_seconds (wall seconds; tests replace it)
clock = time.perf_counter

#: until a save has been timed, it is reckoned at this many bytes per second for 3 times the weights'
#: bytes (the weights and Adam's two moments)
_SAVE_BYTES_PER_SECOND = 50e6


class TimeBudget:
    """``train.max_seconds`` as a wall-time budget that the final validation and save fit into.

    What the trainer still has to do when it stops is one validation and up to two saves
    (checkpoint_best, checkpoint_last): the *reserve*. Durations are measured as the run goes: the
    longest of the last 20 steps, the last validation, the last save. Before the first validation, one
    is reckoned at the training steps' seconds per example times the validation examples (training
    does a backward pass as well, so this errs long); before the first save, see
    ``_SAVE_BYTES_PER_SECOND``. Times count from the trainer's start of :meth:`Trainer.run`.
    """

    def __init__(self, seconds: float, valid_examples: int, save_bytes: int):
        self.seconds = float(seconds)
        self.started = clock()
        self.steps: list[float] = []
        self.step_examples = 0
        self.step_seconds = 0.0
        self.valid_examples = valid_examples
        self.validation: float | None = None
        self.save = save_bytes / _SAVE_BYTES_PER_SECOND
        self.saved = False

    def elapsed(self) -> float:
        return clock() - self.started

    def add_step(self, seconds: float, examples: int) -> None:
        self.steps = (self.steps + [seconds])[-20:]
        self.step_seconds += seconds
        self.step_examples += examples

    def add_save(self, seconds: float) -> None:
        self.save = seconds if not self.saved else max(seconds, 0.5 * self.save)
        self.saved = True

    def step(self) -> float:
        return max(self.steps, default=0.0)

    def reserve(self) -> float:
        """Seconds of one validation and two saves."""
        validation = self.validation
        if validation is None:
            per_example = self.step_seconds / self.step_examples if self.step_examples else 0.0
            validation = per_example * self.valid_examples
        return validation + 2 * self.save

    def exceeded_by(self, work: float) -> bool:
        """Whether doing ``work`` more seconds now would leave too little for the reserve."""
        return bool(self.seconds) and self.elapsed() + work + self.reserve() > self.seconds


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint's JSON."""

    epoch: int = 1  # the epoch in progress
    batch: int = 0  # batches of this epoch already done
    step: int = 0
    lr: float = 0.0
    best: float = math.inf
    best_epoch: int = 0
    history: list = field(default_factory=list)
    skipped: int = 0  # steps whose loss or gradient was not finite (no update)
    nonfinite_run: int = 0  # of which in a row, up to now
    stopped: str = ""  # why training ended before its epochs (learning rate at its floor)


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped training after checkpoint_last was saved; ``signum`` says which."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum


def adam(parameters, train: config_lib.TrainConfig, device: torch.device) -> torch.optim.Adam:
    """Adam with the run's settings; PyTorch's fused kernel on CPU and CUDA, the same update as the
    default loop over parameters, 4-5 times faster on CPU (``benchmarks/results/adam_ab.md``)."""
    return torch.optim.Adam(parameters, lr=train.lr, eps=train.adam_eps, betas=(train.adam_beta1, train.adam_beta2),
                            fused=device.type in ("cpu", "cuda"))


def initialise_from(model: torch.nn.Module, source: str) -> dict:
    """Copy matching parameters from another run or checkpoint; report what did not match."""
    path = checkpoint.resolve(source)
    missing, unexpected = checkpoint.copy_into(model, checkpoint.load_weights(path), strict=False)
    for name in missing:
        log.warning("init_from %s: parameter %s not in the checkpoint; it keeps its fresh initialisation",
                    path, name)
    for name in unexpected:
        log.warning("init_from %s: checkpoint parameter %s has no place in this model; ignored", path, name)
    return {"from": str(path), "missing": missing, "unexpected": unexpected}


class Trainer:
    """Trains ``config`` into ``run_dir``; :meth:`run` returns a summary dict."""

    def __init__(self, config: Config, run_dir: str | Path, resume: bool = False):
        self.config = config
        self.run_dir = Path(run_dir)
        self.resume = resume
        last = self.run_dir / "checkpoint_last.json"
        if resume and not last.is_file() and not (self.run_dir / "config.yaml").is_file():
            raise UserError(f"{self.run_dir}: nothing to resume (no checkpoint_last.json and no config.yaml "
                            "there) — start the run without resuming, or give the folder of an existing run")
        if not resume and last.is_file():
            raise UserError(f"{self.run_dir}: already holds a run — add resume=True to continue it, or "
                            "choose another run_dir")
        self.changes: dict[str, list] = {}
        if resume and last.is_file():
            self.changes = self._check_changes(checkpoint.read_meta(last))
        elif resume:
            log.info("%s: the run stopped before its first checkpoint — starting it from the beginning",
                     self.run_dir)
            resume = False
        self.stop_reason = ""
        self.budget: TimeBudget | None = None
        self._signal: int | None = None
        if not config.data.dir:
            raise UserError("data.dir is not set — add data.dir=PREPARED_DIR (made by varattn prepare)")
        self._check_topk()
        self.task = task_for(config.data.dir)
        self.data = self.task.load(config.data.dir, reverse=config.data.reverse)
        self.train_split = self.data.split(config.data.train_split)
        self.valid_split = self.data.split(config.data.valid_split)
        self.world = distributed.world_from_env()
        self.device = resolve_device(config.train.device, self.world.local_rank)
        memory.check_model(lambda: self.task.build_model(config, self.data), self.device,
                           "lower the model's sizes (model.emb_size, model.enc_hidden, model.dec_hidden, "
                           "model.attn_size, model.inf_hidden, or the transformer section's width and ffn)")
        torch.manual_seed(config.train.seed)
        self.model = self.task.build_model(config, self.data).to(self.device)
        self.net = self.model  # what the loss runs through: the model, or its DDP wrapper
        if config.train.enumerate_topk:
            self.model.register_forward_hook(self._truncate)
        self.optimizer = adam(self.model.parameters(), config.train, self.device)
        self.sampler = torch.Generator(device=self.device)
        self.sampler.manual_seed(config.train.seed + 1)
        self.progress = Progress(lr=config.train.lr)
        self.batcher = self.task.batcher(self.train_split, config, shuffle=True, seed=config.train.seed)
        self._check_batches()
        self.metric = self.task.validation_metric(config.model.mode)
        self.writer = None
        if self.world.main and self.run_dir.is_dir():
            checkpoint.clean(self.run_dir)
        if resume:
            self._restore(last)
        else:
            if self.world.main:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                config_lib.save(config, self.run_dir / "config.yaml")
                self.data.copy_essentials(self.run_dir / "data")
                self._trim_log(0)
            if config.train.init_from:
                self.init_report = initialise_from(self.model, config.train.init_from)
        if self.world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        distributed.barrier(self.world)

    def _check_topk(self) -> None:
        k, mode = self.config.train.enumerate_topk, get_mode(self.config.model.mode)
        if k and not mode.truncatable:
            modes = ", ".join(m.name for m in MODE_RECORDS.values() if m.truncatable)
            why = ("its chain needs every position's emission at every step" if mode.chain else
                   "its loss does not enumerate the positions")
            raise UserError(f"train.enumerate_topk={k}: mode {mode.name} cannot truncate its enumeration ({why}; "
                            f"it applies to {modes}) — set train.enumerate_topk=0 or choose one of those modes")

    def _truncate(self, module: torch.nn.Module, args, output):
        """Forward hook: a training pass's LatentOutput enumerates the train.enumerate_topk positions of
        highest prior score per query (evaluation never reads it)."""
        if module.training and isinstance(output, LatentOutput):
            output.topk = self.config.train.enumerate_topk
        return output

    def _check_batches(self) -> None:
        """Refuse training batches whose output distribution (and its gradient), ``[B, T + 1, V]`` in
        float32 for the largest batch, cannot fit."""
        need = self.task.largest_batch(self.data, self.train_split, self.batcher)
        if need is not None:
            memory.check_fits(need[0], self.device, need[1], need[2])

    def _restore(self, last: Path) -> None:
        record = checkpoint.read_meta(last)
        checkpoint.copy_into(self.model, checkpoint.load_weights(last))
        checkpoint.restore_training(last, self.optimizer, self.sampler, rank=self.world.rank)
        self.progress = Progress(**record["progress"])
        log.info("resuming %s at epoch %d, batch %d (step %d)", self.run_dir, self.progress.epoch,
                 self.progress.batch, self.progress.step)
        if self.changes:
            if "train.lr" in self.changes:
                self._set_lr(self.config.train.lr)
            self.progress.stopped = ""  # new settings may let a run that stopped continue
            if self.world.main:
                config_lib.save(self.config, self.run_dir / "config.yaml")
            for key, (old, new) in self.changes.items():
                log.info("resume: %s changed from %s to %s (applied, recorded in config.yaml)", key, old, new)
        if self.world.main:
            self._trim_log(len(self.progress.history))

    def _check_changes(self, record: dict) -> dict[str, list]:
        """Settings that differ from the checkpoint's: those that may change between runs are returned
        as ``{key: [old, new]}``; any other difference is refused."""
        saved = config_lib.from_saved(record.get("config"), str(self.run_dir / "checkpoint_last.json"))
        changes, refused = config_lib.resume_changes(saved, self.config)
        if refused:
            listed = ", ".join(f"{key}={new!r} (run: {old!r})" for key, (old, new) in refused.items())
            raise UserError(f"{self.run_dir}: cannot resume with {listed} — these fix the model, its data "
                            "or the batch order; drop them to continue the run, or start a new run in "
                            "another folder")
        return changes

    def _trim_log(self, records: int) -> None:
        """Keep the first ``records`` lines of log.jsonl: the validations the restored checkpoint knows
        of (a validation logged after it was written is repeated by the resumed run)."""
        path = self.run_dir / "log.jsonl"
        if not path.is_file():
            return
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        if len(lines) > records:
            atomic_write_bytes(path, "".join(lines[:records]).encode("utf-8"))

    def _meta(self) -> dict:
        return {"config": self.config.to_dict(), "progress": self.progress.__dict__, "task": self.task.name}

    def _save(self, name: str) -> None:
        """Every process calls this (RNG states are gathered); only the main one writes."""
        began = clock()
        rank_rng = distributed.gather_rng(self.world, self.sampler)
        if self.world.main:
            checkpoint.save(self.run_dir, name, self.model, self._meta(), self.optimizer, self.sampler,
                            rank_rng=rank_rng)
        distributed.barrier(self.world)
        if self.budget is not None:
            self.budget.add_save(clock() - began)

    def _set_lr(self, lr: float) -> None:
        self.progress.lr = lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _warmup(self) -> bool:
        cfg = self.config
        return get_mode(cfg.model.mode).warmup and self.progress.step < cfg.train.warmup_steps

    def validate(self) -> dict:
        scores = self.task.score(self.model, self.valid_split, self.device, self.config)
        scores.update(epoch=self.progress.epoch, step=self.progress.step, lr=self.progress.lr)
        if not self.world.main:
            return scores
        with open(self.run_dir / "log.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(scores) + "\n")
        if self.writer is not None:
            for key, value in scores.items():
                if isinstance(value, float):
                    self.writer.add_scalar(f"valid/{key}", value, self.progress.step)
        self.progress.history.append({k: scores[k] for k in scores if not isinstance(scores[k], dict)})
        log.info("validation epoch %d step %d: %s", self.progress.epoch, self.progress.step,
                 " ".join(f"{k}={v:.4g}" for k, v in scores.items() if isinstance(v, float)))
        return scores

    def _record(self, scores: dict, end_of_epoch: bool) -> None:
        """Keep the best checkpoint, halve the learning rate at an epoch without improvement, save."""
        cfg = self.config.train
        value = scores[self.metric]
        improved = self._plausible(value) and value < self.progress.best
        if improved:
            self.progress.best, self.progress.best_epoch = value, self.progress.epoch
        elif end_of_epoch and self.progress.epoch >= cfg.decay_from_epoch:
            if self.progress.lr <= cfg.min_lr:
                self.progress.stopped = (f"validation {self.metric} did not improve with the learning rate at "
                                         f"its floor train.min_lr={cfg.min_lr:g}")
                log.info("stopping: %s", self.progress.stopped)
            else:
                self._set_lr(max(self.progress.lr * cfg.lr_decay, cfg.min_lr))
                log.info("validation %s did not improve: learning rate now %.3g", self.metric, self.progress.lr)
        if end_of_epoch:
            self.progress.epoch += 1
            self.progress.batch = 0
        if improved:
            self._save("checkpoint_best")
        self._save("checkpoint_last")

    def _plausible(self, value: float) -> bool:
        """Whether a validation score may become best: finite, and not absurd — within 1000 times the
        perplexity of a uniform guess over the target vocabulary, for VQA over the answers (the task's hook)."""
        if not math.isfinite(value):
            return False
        return self.task.plausible(self.data, self.metric, value)

    def _skip_step(self, loss_value: float) -> None:
        """Count a step whose loss or gradient was not finite (its update is skipped); after
        ``train.max_nonfinite_steps`` of them in a row, save what is still finite and stop."""
        cfg = self.config.train
        self.progress.skipped += 1
        self.progress.nonfinite_run += 1
        what = "gradient" if math.isfinite(loss_value) else f"loss ({loss_value})"
        log.warning("step %d: non-finite %s — update skipped (%d in a row, %d in all)", self.progress.step,
                    what, self.progress.nonfinite_run, self.progress.skipped)
        if self.progress.nonfinite_run < cfg.max_nonfinite_steps:
            return
        finite = all(bool(torch.isfinite(p).all()) for p in self.model.parameters())
        if finite:
            self._save("checkpoint_last")
        where = ("checkpoint_last holds the weights before them" if finite else
                 "the weights are no longer finite; checkpoint_last holds the last validated ones")
        raise UserError(f"{self.run_dir}: {self.progress.nonfinite_run} steps in a row with a non-finite {what} "
                        f"(epoch {self.progress.epoch}, step {self.progress.step}, learning rate "
                        f"{self.progress.lr:.3g}); {where} — resume with a lower train.lr, or check the data")

    def _signalled(self) -> bool:
        """Whether SIGINT or SIGTERM arrived (on any process of a data-parallel run)."""
        flag = self._signal is not None
        if self.world.distributed:
            flag = distributed.global_sum(float(flag), self.world, self.device) > 0
        return flag

    def _interrupt(self) -> None:
        """Save where training stands and stop with one line."""
        self._save("checkpoint_last")
        signum = self._signal or signal.SIGTERM
        raise TrainingInterrupted(signum, f"{self.run_dir}: stopped by {signal.Signals(signum).name} at epoch "
                                          f"{self.progress.epoch}, step {self.progress.step}; checkpoint_last "
                                          "holds this point — resume the run to continue it")

    @contextmanager
    def _signals_caught(self):
        """While training, SIGINT and SIGTERM only set a flag: the step in progress finishes, then
        checkpoint_last is written. A second signal acts at once (the previous handler)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {}

        def handler(signum, frame):
            self._signal = signum
            signal.signal(signum, previous[signum])

        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, handler)
        try:
            yield
        finally:
            for signum, old in previous.items():
                signal.signal(signum, old)

    def _open_tensorboard(self) -> None:
        if not self.config.train.tensorboard or not self.world.main:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError("train.tensorboard=true needs the tensorboard package — pip install tensorboard") from None
        self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))

    def run(self) -> dict:
        with self._signals_caught():
            return self._run()

    def _run(self) -> dict:
        from tqdm import tqdm

        cfg = self.config
        self._open_tensorboard()
        self.model.train()
        autocast = device_autocast(self.device, cfg.train.bf16, cfg.train.cpu_bf16)
        if cfg.train.cpu_bf16 and self.device.type == "cpu" and not cpu_has_bf16():
            log.warning("train.cpu_bf16: this CPU has no native bf16 products; training in float32")
        weights = sum(p.numel() * p.element_size() for p in self.model.parameters())
        valid_examples = len(self.valid_split) if hasattr(self.valid_split, "__len__") else 0
        budget = self.budget = TimeBudget(cfg.train.max_seconds, valid_examples, 3 * weights)
        stopped_early = False
        validated_at = None  # the step of this session's last validation
        session_steps = 0
        while self.progress.epoch <= cfg.train.epochs and not stopped_early and not self.progress.stopped:
            batches = self.batcher.batches(self.progress.epoch)
            bar = tqdm(total=len(batches), initial=self.progress.batch, desc=f"epoch {self.progress.epoch}",
                       unit="batch", disable=not (cfg.train.progress and self.world.main), dynamic_ncols=True)
            tick, tick_tokens = time.perf_counter(), 0
            for indices in batches[self.progress.batch:]:
                # one step at least; then a step only when it and the final validation and saves still fit
                if session_steps and self._out_of_time(budget.step()):
                    stopped_early = True
                    break
                began = clock()
                indices, empty = distributed.shard(indices, self.world)
                batch = self.task.collate(self.train_split, indices).to(self.device)
                with autocast:
                    loss, stats = self.task.loss(self.net, batch, self.sampler, cfg, self._warmup())
                if self.world.distributed:
                    tokens = 0 if empty else stats["tokens"]
                    total = distributed.global_sum(tokens, self.world, self.device)
                    loss = loss * (tokens * self.world.size / total)
                    stats["tokens"] = tokens
                loss_value = loss.item()
                finite = math.isfinite(loss_value)
                if self.world.distributed:  # every process skips the same steps
                    finite = distributed.global_sum(float(not finite), self.world, self.device) == 0
                self.optimizer.zero_grad(set_to_none=True)
                if finite:
                    loss.backward()
                    norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.train.clip_norm)
                    finite = bool(torch.isfinite(norm))
                if finite:
                    self.optimizer.step()
                    self.progress.nonfinite_run = 0
                self.progress.step += 1
                self.progress.batch += 1
                session_steps += 1
                budget.add_step(clock() - began, len(indices))
                if not finite:
                    self._skip_step(loss_value)
                tick_tokens += stats["tokens"]
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{tick_tokens / (time.perf_counter() - tick):.0f}",
                                lr=f"{self.progress.lr:.2g}")
                if self.writer is not None:
                    self.writer.add_scalar("train/loss", loss_value, self.progress.step)
                if cfg.train.max_steps and self.progress.step >= cfg.train.max_steps:
                    stopped_early = True
                    self.stop_reason = f"train.max_steps={cfg.train.max_steps} reached"
                if (cfg.train.validate_every and self.progress.step % cfg.train.validate_every == 0
                        and not stopped_early and self.progress.batch < len(batches)):
                    # a validation that would leave no room for a step and the final one becomes the final one
                    if self._out_of_time(budget.reserve() + budget.step()):
                        stopped_early = True
                    else:
                        self._validate_and_record(end_of_epoch=False)  # (the loop's last comes below, once)
                        validated_at = self.progress.step
                if self._signalled():
                    self._interrupt()
                if stopped_early:
                    break
            bar.close()
            if validated_at != self.progress.step:  # not when the budget stopped right after a validation
                self._validate_and_record(end_of_epoch=self.progress.batch >= len(batches))
                validated_at = self.progress.step
            if self._signalled():
                self._interrupt()
        if self.writer is not None:
            self.writer.close()
        if not (self.progress.stopped or self.stop_reason):
            self.stop_reason = f"all train.epochs={cfg.train.epochs} epochs done"
        return {"run_dir": str(self.run_dir), "epochs_done": self.progress.epoch - 1,
                "steps": self.progress.step, "best": {self.metric: self.progress.best,
                                                      "epoch": self.progress.best_epoch},
                "last": self.progress.history[-1] if self.progress.history else None,
                "skipped_steps": self.progress.skipped, "stopped": self.progress.stopped or self.stop_reason,
                "changed": self.changes, "seconds": budget.elapsed()}

    def _validate_and_record(self, end_of_epoch: bool) -> None:
        began = clock()
        scores = self.validate()
        self.budget.validation = clock() - began
        self._record(scores, end_of_epoch=end_of_epoch)

    def _out_of_time(self, work: float) -> bool:
        """Whether ``work`` more seconds would overrun train.max_seconds with the final validation and saves
        (the same answer on every process); sets the stop reason."""
        if not self.config.train.max_seconds:
            return False
        over = distributed.global_sum(float(self.budget.exceeded_by(work)), self.world, self.device) > 0
        if over:
            self.stop_reason = (f"time budget train.max_seconds={self.config.train.max_seconds:g} spent (stopped at "
                                f"step {self.progress.step}, leaving {self.budget.reserve():.0f} s for the final "
                                "validation and save)")
        return over


def train(config: Config, run_dir: str | Path, resume: bool = False) -> dict:
    trainer = Trainer(config, run_dir, resume)
    result = trainer.run()
    distributed.leave(trainer.world)
    return result
