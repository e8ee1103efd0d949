"""train.max_seconds is a wall-time budget that holds the final validation and save: with a fake clock
on which a step, a validation and a save each take a known time, the run's own count ends within it."""

import pytest

from varattn.training import checkpoint, trainer as trainer_module
from varattn.training.trainer import Trainer

from conftest import tiny_config


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def clocked(monkeypatch, validation):
    """A clock that moves only when work is done: a training step 2 s; a validation ``validation`` s and a
    save 3 s, or with ``validation=None`` 0.8 times what the trainer reckons with until it has timed one
    (a training step's seconds per example for each validation example; 3 times the weights' bytes at
    ``_SAVE_BYTES_PER_SECOND``)."""
    clock = FakeClock()
    monkeypatch.setattr(trainer_module, "clock", clock)

    def costing(function, seconds):
        def wrapped(*args, **kwargs):
            clock.now += seconds if seconds is not None else clock.save
            return function(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(checkpoint, "save", costing(checkpoint.save, None))
    original_init = Trainer.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        per_batch = len(self.train_split) / len(self.batcher.batches(1))
        seconds = 0.8 * 2.0 / per_batch * len(self.valid_split) if validation is None else validation
        weights = sum(p.numel() * p.element_size() for p in self.model.parameters())
        clock.save = 0.8 * 3 * weights / trainer_module._SAVE_BYTES_PER_SECOND if validation is None else 3.0
        self.task.loss = costing(self.task.loss, 2.0)
        self.task.score = costing(self.task.score, seconds)
        clock.validation = seconds

    monkeypatch.setattr(Trainer, "__init__", init)
    return clock


@pytest.mark.parametrize("budget, validate_every, validation", [
    (60.0, 0, None), (33.0, 0, None), (75.0, 5, 15.0), (101.0, 4, 15.0), (47.0, 3, 15.0), (200.0, 20, 40.0)])
def test_the_run_ends_within_its_budget_including_validation_and_save(monkeypatch, synthetic_data, tmp_path,
                                                                       budget, validate_every, validation):
    clock = clocked(monkeypatch, validation)
    config = tiny_config(synthetic_data, epochs=50, max_seconds=budget, validate_every=validate_every)
    summary = Trainer(config, tmp_path / "run").run()
    assert summary["seconds"] <= budget, summary
    assert "time budget train.max_seconds" in summary["stopped"]
    # and it used the budget: one more step and another validation and two saves would not have fitted
    assert summary["seconds"] + 2.0 + clock.validation + 2 * clock.save > budget, summary
    assert (tmp_path / "run" / "checkpoint_last.json").is_file()


def test_without_a_budget_nothing_stops_early(monkeypatch, synthetic_data, tmp_path):
    clocked(monkeypatch, 15.0)
    summary = Trainer(tiny_config(synthetic_data, epochs=1), tmp_path / "run").run()
    assert summary["stopped"] == "all train.epochs=1 epochs done"
    assert summary["seconds"] == 2.0 * summary["steps"] + 15.0 + 3.0 * 2  # checkpoint_best and _last
