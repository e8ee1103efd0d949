"""A prepared VQA folder (made by :func:`varattn.data.vqa.reader.prepare_vqa`; the layout is in that module's
docstring): its vocabularies, its splits on demand, memory-mapped region features, and batches."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from varattn.data.textio import atomic_write_bytes
from varattn.data.vocab import Vocabulary
from varattn.data.vqa.reader import FORMAT
from varattn.errors import UserError

__all__ = ["VQAData", "VQASplit", "VQABatch", "load_vqa", "QuestionBatcher", "collate_vqa"]

ESSENTIALS = ("meta.json", "vocab.question.json", "answers.json")  # what a run keeps in its data/
_AGAIN = "prepare the data again (varattn prepare vqa)"


@dataclass
class VQABatch:
    """A batch of questions.

    Attributes:
        questions: long [B, L] word ids (0 = padding); lengths: long [B].
        features: float [B, R, D] region features (0 on padding regions); regions: long [B] valid counts.
        answers: long [B, 10] answer ids of the annotators (-1: outside the vocabulary; -2: no annotator).
        gold_region: long [B] (-1 when unknown); indices: long [B] question indices in the split.
    """

    questions: torch.Tensor
    lengths: torch.Tensor
    features: torch.Tensor
    regions: torch.Tensor
    answers: torch.Tensor
    gold_region: torch.Tensor
    indices: torch.Tensor

    def __len__(self) -> int:
        return self.questions.shape[0]

    @property
    def region_mask(self) -> torch.Tensor:
        """bool [B, R]: True on valid regions."""
        return torch.arange(self.features.shape[1], device=self.regions.device) < self.regions[:, None]

    def to(self, device) -> "VQABatch":
        return VQABatch(*(getattr(self, f).to(device, non_blocking=True) for f in
                          ("questions", "lengths", "features", "regions", "answers", "gold_region", "indices")))


class VQASplit:
    """One prepared split: question arrays in memory, features memory-mapped from the folder."""

    def __init__(self, data: "VQAData", name: str, arrays: dict[str, np.ndarray]):
        self.data, self.name = data, name
        self.questions = arrays["questions"]
        self.lengths = arrays["lengths"]
        self.image = arrays["image"]
        self.answers = arrays["answers"]
        self.question_id = arrays["question_id"]
        self.gold_region = arrays["gold_region"]

    def __len__(self) -> int:
        return len(self.lengths)

    def __repr__(self) -> str:
        return f"VQASplit({self.name!r}, {len(self)} questions)"

    @property
    def has_gold_regions(self) -> bool:
        return bool(len(self.gold_region)) and bool((self.gold_region >= 0).all())

    def texts(self) -> list[dict]:
        """Question text and the raw answer strings, parallel to the split."""
        path = self.data.path / f"{self.name}.text.jsonl"
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


class QuestionBatcher:
    """Batches of ``batch_size`` question indices; shuffled per ``(seed, epoch)``, every question once."""

    def __init__(self, n: int, batch_size: int, *, shuffle: bool = True, seed: int = 0):
        if batch_size < 1:
            raise UserError(f"vqa.batch_size={batch_size} must be positive")
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed

    def __len__(self) -> int:
        return self.n

    def batches(self, epoch: int = 0) -> list[np.ndarray]:
        order = (np.random.default_rng([self.seed, int(epoch)]).permutation(self.n) if self.shuffle
                 else np.arange(self.n))
        return [order[i:i + self.batch_size].astype(np.int64) for i in range(0, self.n, self.batch_size)]


def collate_vqa(split: VQASplit, indices) -> VQABatch:
    """A padded :class:`VQABatch` of the questions ``indices`` of ``split``."""
    idx = np.asarray(indices, dtype=np.int64)
    lengths = split.lengths[idx].astype(np.int64)
    longest = max(int(lengths.max(initial=1)), 1)
    images = split.image[idx]
    unique, inverse = np.unique(images, return_inverse=True)
    feats = np.asarray(split.data.features[unique], dtype=np.float32)[inverse]
    return VQABatch(
        questions=torch.from_numpy(split.questions[idx, :longest].astype(np.int64)),
        lengths=torch.from_numpy(lengths),
        features=torch.from_numpy(feats),
        regions=torch.from_numpy(split.data.num_regions[images].astype(np.int64)),
        answers=torch.from_numpy(split.answers[idx].astype(np.int64)),
        gold_region=torch.from_numpy(split.gold_region[idx].astype(np.int64)),
        indices=torch.from_numpy(idx))


@dataclass
class VQAData:
    """A prepared VQA folder (or a run's copy of its essentials): vocabularies now, splits on demand."""

    path: Path
    meta: dict
    question_vocab: Vocabulary
    answers: list[str]
    _splits: dict = field(default_factory=dict, repr=False)
    _features: object = field(default=None, repr=False)
    _num_regions: object = field(default=None, repr=False)

    @property
    def feature_dim(self) -> int:
        return int(self.meta["feature_dim"])

    @property
    def max_regions(self) -> int:
        return int(self.meta["max_regions"])

    @property
    def split_names(self) -> list[str]:
        return list(self.meta.get("splits", {}))

    @property
    def features(self) -> np.ndarray:
        """float16 [images, R, D], memory-mapped."""
        self._load_images()
        return self._features

    @property
    def num_regions(self) -> np.ndarray:
        self._load_images()
        return self._num_regions

    def _load_images(self) -> None:
        if self._features is not None:
            return
        path = self.path / "features.npy"
        if not path.is_file():
            raise UserError(f"{path}: region features missing (a run directory holds only the vocabularies) "
                            f"— point data_dir at the prepared data folder, or {_AGAIN}")
        try:
            feats = np.load(path, mmap_mode="r", allow_pickle=False)
            with np.load(self.path / "images.npz", allow_pickle=False) as z:
                num_regions = z["num_regions"]
        except (OSError, ValueError, KeyError) as e:
            raise UserError(f"{self.path}: unreadable features.npy / images.npz ({e}) — {_AGAIN}") from None
        if feats.ndim != 3 or feats.shape[2] != self.feature_dim or len(num_regions) != feats.shape[0]:
            raise UserError(f"{path}: shape {feats.shape} does not match meta.json (width {self.feature_dim}, "
                            f"{len(num_regions)} images) — {_AGAIN}")
        self._features, self._num_regions = feats, num_regions

    def split(self, name: str) -> VQASplit:
        if name in self._splits:
            return self._splits[name]
        if name not in self.meta.get("splits", {}):
            raise UserError(f"{self.path}: no split {name!r} — available splits: {', '.join(self.split_names)}"
                            + (" (real VQA v2 has no public test answers: use split=valid)"
                               if name == "test" else ""))
        p = self.path / f"{name}.npz"
        if not p.is_file():
            raise UserError(f"{p}: split file missing (a run directory holds only the vocabularies) — point "
                            f"data_dir at the prepared data folder, or {_AGAIN}")
        try:
            with np.load(p, allow_pickle=False) as z:
                arrays = {k: z[k] for k in ("questions", "lengths", "image", "answers", "question_id",
                                            "gold_region")}
        except KeyError as e:
            raise UserError(f"{p}: array {e} missing — {_AGAIN}") from None
        except (OSError, ValueError) as e:
            raise UserError(f"{p}: unreadable ({e}) — {_AGAIN}") from None
        sp = VQASplit(self, name, arrays)
        if len(sp) != self.meta["splits"][name].get("questions", len(sp)):
            raise UserError(f"{p}: holds {len(sp)} questions but meta.json says "
                            f"{self.meta['splits'][name]['questions']} — {_AGAIN}")
        n_images = len(self.num_regions)
        if len(sp) and (sp.image.max() >= n_images or sp.answers.max() >= len(self.answers)
                        or sp.questions.max() >= len(self.question_vocab)):
            raise UserError(f"{p}: ids beyond the images or vocabularies of {self.path} — {_AGAIN}")
        self._splits[name] = sp
        return sp

    def copy_essentials(self, dst: str | os.PathLike) -> None:
        """meta.json, the question vocabulary and the answer list: what a model needs to be rebuilt."""
        dst = Path(dst)
        dst.mkdir(parents=True, exist_ok=True)
        for name in ESSENTIALS[1:]:
            shutil.copy2(self.path / name, dst / name)
        meta = {**self.meta, "run_copy": True}  # marks a folder of vocabularies without splits or features
        atomic_write_bytes(dst / "meta.json", json.dumps(meta, indent=1).encode("utf-8"))


def load_vqa(path: str | os.PathLike) -> VQAData:
    """Open a prepared VQA folder (or a run's ``data/`` copy, which has no splits or features)."""
    p = Path(path)
    meta_path = p / "meta.json"
    if not meta_path.is_file():
        raise UserError(f"{meta_path}: not a prepared data folder — make one with varattn prepare vqa")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{meta_path}: unreadable ({e}) — {_AGAIN}") from None
    if meta.get("task") != "vqa":
        raise UserError(f"{meta_path}: not VQA data (task {meta.get('task', 'translation')!r})")
    if meta.get("format") != FORMAT:
        raise UserError(f"{meta_path}: VQA format {meta.get('format')!r} is not supported — {_AGAIN}")
    apath = p / "answers.json"
    try:
        answers = json.loads(apath.read_text(encoding="utf-8"))["answers"]
    except FileNotFoundError:
        raise UserError(f"{apath}: answer vocabulary missing — {_AGAIN}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise UserError(f"{apath}: unreadable answer vocabulary ({e}) — {_AGAIN}") from None
    if not isinstance(answers, list) or len(answers) != meta.get("num_answers"):
        raise UserError(f"{apath}: {len(answers)} answers but meta.json says {meta.get('num_answers')} — {_AGAIN}")
    return VQAData(p, meta, Vocabulary.load(p / "vocab.question.json"), answers)
