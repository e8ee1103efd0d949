"""``train.cpu_bf16`` (issue 24, item 3): training on a CPU may autocast to bfloat16 where the CPU has native
bf16 products. The autocast switches on exactly when asked and supported; a bf16 training step of every
mode of the Transformer gives the float32 loss and gradients to bf16 precision; a run trained with it
learns as a float32 run does, and its validation is the float32 score of its weights."""

import json

import pytest
import torch

from varattn import config as config_lib
from varattn import latent
from varattn.config import MODES
from varattn.device import autocast, cpu_has_bf16
from varattn.models.registry import build_translation_model
from varattn.tasks.translation_scores import score_split
from varattn.training.runs import load_run
from varattn.training.trainer import Trainer

from test_model import make_batch, random_sentences
from test_transformer import TINY, tiny_transformer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("asked", [False, True])
def test_cpu_autocast_is_on_only_when_asked_and_supported(asked):
    with autocast(torch.device("cpu"), bf16=True, cpu_bf16=asked):
        assert torch.is_autocast_enabled("cpu") == (asked and cpu_has_bf16())
        assert not torch.is_autocast_enabled("cuda")


def loss_and_grads(model, batch, mode: str, bf16: bool):
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = model(*batch)
        loss, _ = latent.batch_objective(latent.get_mode(mode), out, generator=torch.Generator().manual_seed(5))
    loss.backward()
    return loss.detach().float(), {n: p.grad.detach().clone() for n, p in model.named_parameters()
                                   if p.grad is not None}


@pytest.mark.parametrize("mode", [m for m in MODES if m != "vae-dirichlet"])
def test_bf16_step_matches_float32(mode):
    torch.manual_seed(0)
    config = config_lib.from_dict({"model": {"mode": mode, "arch": "transformer"},
                                   "transformer": {**TINY, "width": 32, "ffn": 64}}).validate()
    model = build_translation_model(config, 30, 25).train()
    batch = make_batch(random_sentences(6, torch.Generator().manual_seed(3)))
    want_loss, want = loss_and_grads(model, batch, mode, bf16=False)
    got_loss, got = loss_and_grads(model, batch, mode, bf16=True)
    assert got_loss == pytest.approx(want_loss.item(), rel=0.02)
    assert got.keys() == want.keys()
    assert not torch.equal(got_loss, want_loss)  # the bf16 path ran
    flat_want = torch.cat([g.flatten() for g in want.values()])
    flat_got = torch.cat([got[n].flatten() for n in want])
    cosine = torch.nn.functional.cosine_similarity(flat_got, flat_want, dim=0)
    assert cosine > 0.99
    assert (flat_got - flat_want).norm() < 0.1 * flat_want.norm()


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bf16 products: cpu_bf16 trains in float32")
@pytest.mark.parametrize("mode", ["soft", "vae-enum"])
def test_a_bf16_run_learns_like_float32_and_validates_in_float32(synthetic_data, tmp_path, mode):
    records = {}
    for bf16 in (False, True):
        run_dir = tmp_path / f"{mode}-{bf16}"
        config = tiny_transformer(synthetic_data, mode, max_steps=12, lr=0.01, cpu_bf16=bf16)
        Trainer(config, run_dir).run()
        records[bf16] = json.loads((run_dir / "log.jsonl").read_text().splitlines()[-1])
        run = load_run(run_dir, torch.device("cpu"))
        rescored = score_split(run.model, Trainer(config, tmp_path / "scratch").valid_split, run.device)
        assert rescored["ppl"] == pytest.approx(records[bf16]["ppl"], rel=1e-5)  # validation was float32
    assert records[True]["ppl"] == pytest.approx(records[False]["ppl"], rel=0.05)
