"""The house holds its drawing (docs/architecture.md): imports only point down the layers, the package's
import graph has no cycle, and nothing below the CLI parses arguments or prints."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "varattn"

# Lowest first; a module may import from its own layer or any layer below it, never above.
LAYERS = {
    "latent": 0,
    "errors": 1, "memory": 1, "stopping": 1,
    "device": 1,
    "config": 2,
    "data": 3,
    "modules": 4,
    "models": 5,
    "decoding": 6,  # beam search over any model; a task's validation may decode
    "tasks": 7,
    "training": 8,
    "analysis": 9,
    "api": 10,
    "export": 10,
    "serve": 11,
    "cli": 12,
    "__main__": 13,
    "__init__": 13,  # the package root only re-exports the API, lazily
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(name: str) -> str:
    parts = name.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def resolve(target: str, names: list[str], known: dict[str, Path]) -> list[str]:
    """The package modules an ``import``/``from target import names`` statement loads."""
    found = [f"{target}.{n}" for n in names if f"{target}.{n}" in known]
    if len(found) < len(names) and target in known:
        found.append(target)
    return found


def imports(path: Path, known: dict[str, Path]) -> list[tuple[str, int]]:
    """(imported package module, line) for every import in the file, at any depth (lazy ones too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    edges = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import — write it absolute"
            if (node.module or "").split(".")[0] == "varattn" and [a.name for a in node.names] != ["__version__"]:
                edges += [(m, node.lineno) for m in resolve(node.module, [a.name for a in node.names], known)]
        elif isinstance(node, ast.Import):
            edges += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "varattn"]
    return edges


def test_every_module_has_a_layer():
    unknown = {layer_of(name) for name in modules()} - set(LAYERS)
    assert not unknown, f"modules outside the drawing: {unknown} — add them to docs/architecture.md and LAYERS"


def test_imports_point_down():
    known = modules()
    upward = []
    for name, path in known.items():
        mine = LAYERS[layer_of(name)]
        for target, line in imports(path, known):
            if LAYERS[layer_of(target)] > mine:
                upward.append(f"{path.relative_to(PACKAGE)}:{line} imports {target}")
    assert not upward, "\n".join(upward)


CAPABILITY_HOLDERS = ("model", "task", "run", "loaded")


def test_capabilities_are_types_not_attribute_probes():
    """A model's or task's capabilities are asked by type (models/protocol.py, tasks/base.py), never by
    ``hasattr``/``getattr`` on the object: a probe silently takes the fallback when a name is misspelt."""
    probes = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("hasattr", "getattr") \
                    and node.args:
                probed = ast.unparse(node.args[0]).split(".")[-1]
                if probed in CAPABILITY_HOLDERS or probed.endswith("_model"):
                    probes.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {ast.unparse(node)}")
    assert not probes, "\n".join(probes)


def test_latent_core_imports_nothing_else_of_the_package():
    known = modules()
    for name, path in known.items():
        if layer_of(name) == "latent":
            assert all(layer_of(t) == "latent" for t, _ in imports(path, known)), name


def test_import_graph_has_no_cycle():
    known = modules()
    graph = {name: sorted({t for t, _ in imports(path, known) if t != name}) for name, path in known.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node)


@pytest.mark.parametrize("forbidden", ["argparse"])
def test_nothing_below_the_cli_parses_arguments(forbidden):
    for name, path in modules().items():
        if LAYERS[layer_of(name)] >= LAYERS["cli"]:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert all(a.name != forbidden for a in node.names), f"{name}:{node.lineno} imports {forbidden}"
            if isinstance(node, ast.ImportFrom):
                assert node.module != forbidden, f"{name}:{node.lineno} imports from {forbidden}"


def test_nothing_below_the_cli_prints():
    offenders = []
    for name, path in modules().items():
        if LAYERS[layer_of(name)] >= LAYERS["cli"]:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                offenders.append(f"{name}:{node.lineno}")
    assert not offenders, "print() below the CLI: " + ", ".join(offenders)


def test_every_mode_has_a_record_and_an_objective():
    """One list of modes: each record carries its objective, and objective() runs each by its name."""
    from varattn.latent import MODE_RECORDS, MODES, objectives

    assert tuple(MODE_RECORDS) == MODES == objectives.MODES
    assert all(callable(record.loss) and record.name == name for name, record in MODE_RECORDS.items())


def test_mode_names_live_in_the_core_only():
    """Outside latent/, no code compares a mode's name with a literal: it asks the record."""
    names = set(__import__("varattn.latent", fromlist=["MODES"]).MODES) - {"soft"}
    offenders = []
    for name, path in modules().items():
        if layer_of(name) in ("latent", "cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                for side in [node.left, *node.comparators]:
                    if isinstance(side, ast.Constant) and side.value in names | {"soft"}:
                        offenders.append(f"{name}:{node.lineno} compares with {side.value!r}")
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "startswith" and node.args
                    and isinstance(node.args[0], ast.Constant) and node.args[0].value == "vae-"):
                offenders.append(f"{name}:{node.lineno} tests the 'vae-' prefix")
    assert not offenders, "\n".join(offenders)


# --- an addition is one place: a toy architecture and a toy task, registered from this file alone ----------


class _BagEncoded:
    """What the toy model's decoder needs from the source (decoding protocol)."""

    def __init__(self, out_memory, keys, mask, src_lengths):
        self.out_memory, self.keys, self.mask, self.src_lengths = out_memory, keys, mask, src_lengths

    def index_select(self, rows):
        return _BagEncoded(self.out_memory[rows], self.keys[rows], self.mask[rows], self.src_lengths[rows])


class _BagState:
    def __init__(self, hidden):
        self.hidden = hidden

    def index_select(self, rows):
        return _BagState(self.hidden[:, rows])


def _toy_architecture():
    """A third architecture: source embeddings as memory (no encoder), a GRU over the target prefix,
    dot-product prior scores, and the shared output layer; any enumerable latent mode trains it."""
    import torch
    from torch import nn

    from dataclasses import dataclass

    from varattn.config import Section, positive
    from varattn.data.vocab import PAD
    from varattn.latent import LatentOutput, get_mode
    from varattn.models.protocol import DecodeStep
    from varattn.modules.output import OutputLayer, TokenLikelihood

    @dataclass
    class BagConfig(Section):
        width: int = positive(16, "embedding and GRU size")

    class BagOfSourceWords(nn.Module):
        def __init__(self, config, src_vocab: int, tgt_vocab: int):
            super().__init__()
            self.config, self.mode = config.model, get_mode(config.model.mode)
            self.width = config.bag.width
            self.src_embedding = nn.Embedding(src_vocab, self.width, padding_idx=PAD)
            self.tgt_embedding = nn.Embedding(tgt_vocab, self.width, padding_idx=PAD)
            self.decoder = nn.GRU(self.width, self.width, batch_first=True)
            self.output = OutputLayer(self.width, self.width, self.width, tgt_vocab, 0.0)

        @classmethod
        def from_config(cls, config, src_vocab, tgt_vocab):
            return cls(config, src_vocab, tgt_vocab)

        has_posterior = False

        def encode(self, src, src_lengths):
            memory = self.src_embedding(src)
            return _BagEncoded(self.output.from_memory(memory), memory, src != PAD, src_lengths)

        def forward(self, src, src_lengths, tgt_in, tgt_out, tgt_lengths):
            encoded = self.encode(src, src_lengths)
            hidden, _ = self.decoder(self.tgt_embedding(tgt_in))                 # [B, T, W]
            prior = hidden @ encoded.keys.transpose(1, 2)                         # [B, T, S]
            likelihood = TokenLikelihood(self.output, self.output.query(hidden), encoded.out_memory, tgt_out, 10 ** 6)
            return LatentOutput(prior, None, encoded.mask[:, None, :], likelihood, tgt_out != PAD)

        def start(self, encoded):
            return _BagState(torch.zeros(1, encoded.mask.size(0), self.width))

        def step(self, encoded, state, prev_tokens, kmax=0):
            out, hidden = self.decoder(self.tgt_embedding(prev_tokens)[:, None, :], state.hidden)
            prior = (out @ encoded.keys.transpose(1, 2)).squeeze(1)              # [N, S]
            log_probs = self.output.next_word_log_probs(self.output.query(out.squeeze(1)), encoded.out_memory,
                                                        encoded.mask, prior, soft=self.mode.soft_context, kmax=kmax)
            return DecodeStep(log_probs, prior, _BagState(hidden))

    return BagOfSourceWords, BagConfig


def _toy_task():
    """A second sequence task with its own data format: a folder of words (``words.txt``), each to be
    spelt backwards; characters are the vocabulary on both sides."""
    import dataclasses
    import json
    import shutil

    import numpy as np

    from varattn.data.text.batching import IdPairs, TokenBatcher, collate
    from varattn.decoding.translate import decode_ids
    from varattn.models.registry import build_translation_model
    from varattn.tasks.base import Task
    from varattn.tasks.translation import batch_loss
    from varattn.tasks.translation_scores import score_split, validation_metric

    class ReversedWords(IdPairs):
        def __init__(self, words, symbols):
            ids = [[symbols[c] for c in word] for word in words]
            super().__init__(ids, [i[::-1] for i in ids])
            self.src_lengths = np.array([len(i) for i in ids])
            self.tgt_lengths = self.src_lengths + 1

    class ReversalData:
        def __init__(self, folder):
            self.folder = folder
            words = (folder / "words.txt").read_text(encoding="utf-8").split()
            symbols = {c: 4 + k for k, c in enumerate(sorted({c for w in words for c in w}))}  # after the specials
            self.vocab_size = 4 + len(symbols)
            self.splits = {"train": ReversedWords(words[:-20], symbols), "valid": ReversedWords(words[-20:], symbols)}

        def split(self, name):
            return self.splits[name]

        def copy_essentials(self, destination):
            destination.mkdir(parents=True, exist_ok=True)
            for name in ("meta.json", "words.txt"):
                shutil.copy(self.folder / name, destination / name)

    class ReversalTask(Task):
        name = "toy-reversal"

        def load(self, data_dir, reverse=False):
            return ReversalData(Path(data_dir))

        def build_model(self, config, data):
            return build_translation_model(config, data.vocab_size, data.vocab_size)

        def batcher(self, split, config, *, shuffle, seed):
            return TokenBatcher(split.src_lengths, split.tgt_lengths, config.data.max_tokens, shuffle=shuffle, seed=seed)

        def collate(self, split, indices):
            return collate(split, indices)

        def loss(self, model, batch, generator, config, warmup):
            return batch_loss(model, batch, generator, config.model, warmup)

        def score(self, model, split, device, config):
            return score_split(model, split, device, max_tokens=config.data.eval_max_tokens, bf16=False)

        def validation_metric(self, mode):
            return validation_metric(mode)

        def evaluate(self, run, data, split, **options):
            """`varattn evaluate` of this task: the validation scores, ``backwards``, the share of the
            split's words whose greedy spelling is the word reversed, and ``greedy_length``, its mean length."""
            results = super().evaluate(run, data, split, **options)
            words = data.split(split)
            found = decode_ids(run, [words.src(i).tolist() for i in range(len(words))],
                               dataclasses.replace(run.config.decode, beam=1))
            results["backwards"] = float(np.mean([h.tokens == words.tgt(i).tolist() for i, h in enumerate(found)]))
            results["greedy_length"] = float(np.mean([len(h.tokens) for h in found]))
            return results

    def write_folder(folder):
        folder.mkdir(parents=True)
        rng = np.random.default_rng(0)
        words = ["".join(rng.choice(list("abcdefgh"), size=rng.integers(2, 7))) for _ in range(200)]
        (folder / "words.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
        (folder / "meta.json").write_text(json.dumps({"task": ReversalTask.name}), encoding="utf-8")

    return ReversalTask, write_folder


def test_a_new_architecture_and_a_new_task_are_registered_from_one_file_and_train(tmp_path, monkeypatch, capsys):
    """Both additions live in this file only: registering them is all varattn needs to train, validate,
    checkpoint, beam-search and evaluate them (`varattn evaluate` reports the task's own evaluation)."""
    import json

    import torch

    from varattn import config as config_lib
    from varattn.decoding.search import beam_search
    from varattn.models import registry
    from varattn.tasks import base
    from varattn.training.trainer import Trainer

    from varattn.config import registry as sections

    task, write_folder = _toy_task()
    monkeypatch.setattr(registry, "ARCHITECTURES", dict(registry.ARCHITECTURES))
    monkeypatch.setattr(base, "TASKS", dict(base.TASKS))
    monkeypatch.setattr(sections, "_SECTIONS", dict(sections._SECTIONS))
    monkeypatch.setattr(sections, "_OWNERS", dict(sections._OWNERS))
    model_class, settings = _toy_architecture()
    registry.register_architecture("bag", model_class, settings=settings)
    base.register_task(task.name, task)
    write_folder(tmp_path / "words")
    config = config_lib.load(Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml",
                             [f"data.dir={tmp_path / 'words'}", "model.arch=bag", "model.mode=marginal",
                              "data.max_tokens=120", "train.epochs=2", "train.progress=false", "train.device=cpu",
                              "train.bf16=false", "train.lr=0.01", "bag.width=12"])
    with pytest.raises(config_lib.UserError, match="bag.width=0 must be positive"):
        config_lib.apply_overrides(config_lib.Config(), ["bag.width=0"]).validate()
    trainer = Trainer(config, tmp_path / "run")
    assert type(trainer.model).__name__ == "BagOfSourceWords" and trainer.model.width == 12
    assert config_lib.load(tmp_path / "run" / "config.yaml").bag.width == 12  # the run's config has the section
    first = trainer.validate()["ppl"]
    trainer.run()
    last = trainer.validate()["ppl"]
    assert last < 0.8 * first, (first, last)                 # it learnt something in two epochs
    assert (tmp_path / "run" / "checkpoint_best.json").is_file()
    split = trainer.data.split("valid")
    src = torch.tensor([split.src(0).tolist()])
    found = beam_search(trainer.model.eval(), src, torch.tensor([src.size(1)]), beam=3, max_len_b=8)
    assert found[0] and all(0 <= t < trainer.data.vocab_size for t in found[0][0].tokens)

    # `varattn evaluate` reaches the task's own evaluation through the registry (no table names the task)
    from varattn.cli.main import main

    results = tmp_path / "evaluate.json"
    assert main(["evaluate", str(tmp_path / "run" / "checkpoint_last.json"), "--data", str(tmp_path / "words"),
                 "--split", "valid", "--json", str(results), "--device", "cpu"]) == 0
    found = json.loads(results.read_text(encoding="utf-8"))
    assert found["ppl"] == pytest.approx(last, rel=1e-6)    # the same weights as the trainer's last validation
    decode = config.decode
    greedy = [beam_search(trainer.model, torch.tensor([split.src(i).tolist()]), torch.tensor([len(split.src(i))]),
                          beam=1, max_len_a=decode.max_len_a, max_len_b=decode.max_len_b)[0][0].tokens
              for i in range(len(split))]
    correct = sum(g == split.tgt(i).tolist() for i, g in enumerate(greedy))
    assert found["backwards"] == pytest.approx(correct / len(split))
    assert found["greedy_length"] > 0 and found["greedy_length"] == pytest.approx(sum(map(len, greedy)) / len(split))


def test_every_config_section_is_owned_by_a_registered_component():
    """A section belongs to the core (varattn.config.sections), to a registered architecture's module, or
    to a module a registered task's module imports; its class lives in the module that owns it."""
    import importlib

    from varattn import config as config_lib
    from varattn.models import registry
    from varattn.tasks import base

    def module_of(entry) -> str:
        return entry.partition(":")[0] if isinstance(entry, str) else entry.__module__

    architectures = {module_of(entry) for entry in registry.ARCHITECTURES.values()}
    known = modules()
    task_imports = {target for entry in base.TASKS.values()
                    for target, _ in imports(known[module_of(entry)], known)}
    for name, settings in config_lib.sections().items():
        owner = config_lib.section_owner(name)
        assert settings.__module__ == owner, f"section {name}: {settings.__qualname__} is not defined in {owner}"
        assert owner == "varattn.config.sections" or owner in architectures or owner in task_imports, \
            f"section {name} is owned by {owner}, which is no registered architecture or task"
        assert importlib.import_module(owner)


def test_a_section_must_be_a_typed_section_dataclass():
    from dataclasses import dataclass

    from varattn.config import register_section

    @dataclass
    class Loose:
        size: int = 3

    with pytest.raises(TypeError, match="subclassing varattn.config.Section"):
        register_section("loose", Loose, owner=__name__)
