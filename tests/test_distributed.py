"""Data-parallel training with torchrun on 2 CPU processes (gloo): the same global batch gives the same
update as one process, and a resumed DDP run repeats an uninterrupted one."""

import subprocess
import sys

import pytest
import torch

from varattn.training import checkpoint
from varattn import config as config_lib
from varattn.training.trainer import train

from conftest import tiny_config

pytestmark = pytest.mark.slow  # end to end: the fast loop (-m "not slow") leaves it out


def torchrun(config, run_dir, *extra, resume=False):
    path = run_dir.parent / f"{run_dir.name}.yaml"
    config_lib.save(config, path)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "varattn", "train", str(path), "--out", str(run_dir), *extra]
    if resume:
        command.append("--resume")
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]


def weights(run_dir):
    return checkpoint.load_weights(run_dir / "checkpoint_last.json")


def test_two_processes_match_one_process(synthetic_data, tmp_path):
    # adam_eps = 1 makes Adam's step ~ lr * gradient (for |g| << 1), so a wrong gradient scale shows
    # directly instead of being normalised away, and float noise on tiny gradients is not amplified
    config = tiny_config(synthetic_data, "vae-enum", max_steps=3, lr=0.5, adam_eps=1.0)
    train(config, tmp_path / "single")
    torchrun(config, tmp_path / "ddp")
    one, two = weights(tmp_path / "single"), weights(tmp_path / "ddp")
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-6, msg=name)


def test_resume_under_ddp_repeats_the_straight_run(synthetic_data, tmp_path):
    config = tiny_config(synthetic_data, "vae-sample", max_steps=4)
    config.model.dropout = 0.2
    torchrun(config, tmp_path / "straight")
    config.train.max_steps = 2
    torchrun(config, tmp_path / "cut")
    config.train.max_steps = 4
    torchrun(config, tmp_path / "cut", resume=True)
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "cut")
    for name in a:
        assert torch.equal(a[name], b[name]), name
