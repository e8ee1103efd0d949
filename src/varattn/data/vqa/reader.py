"""Visual question answering data: the VQA v2 layout in, a prepared folder out, and its reader.

**Input** (``varattn prepare vqa --from DIR``), the layout of https://visualqa.org (v2):

- ``[v2_]OpenEnded_mscoco_{TAG}_questions.json``: ``{"questions": [{"question_id", "image_id",
  "question"}, ...]}``;
- ``[v2_]mscoco_{TAG}_annotations.json``: ``{"annotations": [{"question_id", "image_id", "answers":
  [{"answer": str, ...} x 10], ...}]}`` (an optional ``"gold_region"`` per annotation: the synthetic
  corpus records the region the answer depends on);
- region features, bottom-up-attention style, in one or more ``.npz`` files (or ``.h5``/``.hdf5`` when
  h5py is installed), each holding ``image_ids`` ``[N]``, ``features`` ``[N, R, D]`` (rows past an
  image's count are padding) and ``num_regions`` ``[N]`` (the valid regions, 1..R; all R when absent).

A TAG containing ``train`` becomes the split ``train``, ``val`` becomes ``valid``, ``test`` becomes
``test``; a TAG without annotations (the public test sets) is skipped and reported.

**Prepared folder** (``meta.json`` says ``"task": "vqa"``): ``vocab.question.json`` (question words),
``answers.json`` (the answer vocabulary: the most frequent normalised training answers, counted over all
ten annotators), ``features.npy`` ``[images, R, D]`` float16 (memory-mapped when read) with
``images.npz`` (``image_ids``, ``num_regions``), and per split ``{split}.npz``: ``questions`` ``[N, L]``
(word ids, 0-padded), ``lengths``, ``image`` (row of features.npy), ``answers`` ``[N, 10]`` (answer ids,
-1 for an answer outside the vocabulary, -2 where a question has fewer than ten annotators),
``question_id``, ``gold_region`` (-1 when unknown); ``{split}.text.jsonl`` keeps the question text and the ten answer strings. Training questions
none of whose answers is in the vocabulary are dropped (counted in meta.json); evaluation splits keep
every question (such a question can only be answered wrongly). :mod:`varattn.data.vqa.prepared` reads
the prepared folder.
"""

from __future__ import annotations

import json
import os
import re
import struct
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from varattn.data.textio import atomic_write_bytes, staged_folder
from varattn.data.vocab import Vocabulary
from varattn.errors import UserError

__all__ = ["ANSWERS_PER_QUESTION", "normalize_answer", "tokenize_question", "FeatureFile", "open_features",
           "read_split", "find_raw", "prepare_vqa"]

ANSWERS_PER_QUESTION = 10
FORMAT = 1
_QUESTIONS = re.compile(r"(?:v2_)?OpenEnded_mscoco_(?P<tag>[\w\-]+)_questions\.json")
_ANNOTATIONS = re.compile(r"(?:v2_)?mscoco_(?P<tag>[\w\-]+)_annotations\.json")
_FEATURE_SUFFIXES = (".npz", ".h5", ".hdf5")
_ALIASES = {"image_ids": ("image_ids", "image_id", "ids"),
            "features": ("features", "image_features", "x"),
            "num_regions": ("num_regions", "num_boxes", "num_bbox")}

# ----------------------------------------------------------------------------- text


_NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
            "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = {"a", "an", "the"}
_PUNCT = re.compile(r"[;/\[\]\"{}()=+\\_\-><@`,?!*#%^&$|~:]")
_PERIOD = re.compile(r"(?<!\d)\.(?!\d)")


def normalize_answer(answer: str) -> str:
    """The VQA evaluation's answer normalisation, simplified: lowercase, punctuation removed (a period
    only outside numbers), number words as digits, articles dropped, spaces collapsed."""
    text = _PERIOD.sub("", _PUNCT.sub("", answer.lower().replace("\n", " ").replace("\t", " ")))
    words = [_NUMBERS.get(w, w) for w in text.split() if w not in _ARTICLES]
    return " ".join(words)


def tokenize_question(question: str) -> list[str]:
    """Lowercased words of a question; ``'s`` split off, other punctuation dropped."""
    text = question.lower().replace("'s", " 's")
    return re.findall(r"'s|[a-z0-9]+(?:'[a-z]+)?", text)


# ----------------------------------------------------------------------------- raw files


def _read_json(path: Path, key: str) -> list:
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 — give the VQA JSON file as downloaded") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: invalid JSON ({e.msg}) — download the file again") from None
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise UserError(f"{path}: expected an object with a {key!r} list (the VQA v2 layout)")
    return data[key]


def _field(item, name: str, kind, path: Path, index: int):
    value = item.get(name) if isinstance(item, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise UserError(f"{path}: entry {index} has no valid {name!r} ({kind.__name__}) — fix or remove it")
    return value


@dataclass
class RawQuestion:
    question_id: int
    image_id: int
    question: str
    answers: list[str]
    gold_region: int = -1


def read_split(questions_path: Path, annotations_path: Path) -> list[RawQuestion]:
    """Join a questions file and its annotations file; every mismatch is a UserError naming the file."""
    questions = _read_json(questions_path, "questions")
    annotations = _read_json(annotations_path, "annotations")
    by_id: dict[int, dict] = {}
    for i, a in enumerate(annotations):
        qid = _field(a, "question_id", int, annotations_path, i)
        if qid in by_id:
            raise UserError(f"{annotations_path}: question {qid} is annotated twice — keep one annotation")
        by_id[qid] = a
    out, seen = [], set()
    for i, q in enumerate(questions):
        qid = _field(q, "question_id", int, questions_path, i)
        iid = _field(q, "image_id", int, questions_path, i)
        text = _field(q, "question", str, questions_path, i)
        if qid in seen:
            raise UserError(f"{questions_path}: question {qid} appears twice — remove the duplicate")
        seen.add(qid)
        a = by_id.get(qid)
        if a is None:
            raise UserError(f"{questions_path}: question {qid} has no annotation in {annotations_path} — "
                            "give the annotations file of the same split")
        if a.get("image_id", iid) != iid:
            raise UserError(f"{annotations_path}: question {qid} is about image {a.get('image_id')} but "
                            f"{questions_path} says image {iid} — give files of the same release")
        answers = a.get("answers")
        if not isinstance(answers, list) or not 1 <= len(answers) <= ANSWERS_PER_QUESTION or not all(
                isinstance(x, dict) and isinstance(x.get("answer"), str) for x in answers):
            raise UserError(f"{annotations_path}: question {qid} needs 1 to {ANSWERS_PER_QUESTION} answers "
                            "as {\"answer\": text} objects — fix the annotation")
        gold = a.get("gold_region", -1)
        out.append(RawQuestion(qid, iid, text, [x["answer"] for x in answers],
                               gold if isinstance(gold, int) else -1))
    return out


def split_name(tag: str) -> str | None:
    tag = tag.lower()
    for key, name in (("train", "train"), ("val", "valid"), ("test", "test")):
        if key in tag:
            return name
    return None


def find_raw(folder: Path) -> tuple[dict[str, tuple[Path, Path]], list[str], list[Path]]:
    """``{split: (questions, annotations)}``, the question files skipped (no annotations), and the
    feature files (in ``folder`` or its ``features/`` subfolder)."""
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder — give from_dir the folder holding the VQA v2 files")
    questions, annotations = {}, {}
    for p in sorted(folder.iterdir()):
        if m := _QUESTIONS.fullmatch(p.name):
            questions[m["tag"]] = p
        elif m := _ANNOTATIONS.fullmatch(p.name):
            annotations[m["tag"]] = p
    splits, skipped = {}, []
    for tag, qpath in questions.items():
        if tag not in annotations:
            skipped.append(qpath.name)
            continue
        name = split_name(tag)
        if name is None:
            raise UserError(f"{qpath}: cannot tell the split of tag {tag!r} — name it with train, val or test")
        if name in splits:
            raise UserError(f"{folder}: two question files for split {name} ({splits[name][0].name}, "
                            f"{qpath.name}) — keep one")
        splits[name] = (qpath, annotations[tag])
    if "train" not in splits:
        raise UserError(f"{folder}: no training questions with annotations (e.g. "
                        "v2_OpenEnded_mscoco_train2014_questions.json + v2_mscoco_train2014_annotations.json)")
    places = [folder, folder / "features"]
    features = sorted(p for d in places if d.is_dir() for p in d.iterdir()
                      if p.is_file() and p.suffix in _FEATURE_SUFFIXES)
    if not features:
        raise UserError(f"{folder}: no region features (.npz, or .h5/.hdf5 with h5py) there or in features/ — "
                        "add a file with image_ids, features [N, R, D] and num_regions")
    return splits, skipped, features


# ----------------------------------------------------------------------------- feature files


def _h5py():
    try:
        import h5py
    except ImportError:
        raise UserError("HDF5 region features need the h5py package — pip install h5py (or convert the "
                        "features to .npz)") from None
    return h5py


def _npz_memmap(path: Path, name: str) -> np.ndarray | None:
    """Memory-map array ``name`` of an uncompressed .npz (``numpy.savez``), so that a file larger than
    memory is read row by row; None for a compressed member (then it is loaded whole)."""
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(f"{name}.npy")
        if info.compress_type != zipfile.ZIP_STORED:
            return None
        with open(path, "rb") as handle:
            handle.seek(info.header_offset)
            local = handle.read(30)                      # the member's local header: name and extra lengths
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            handle.seek(info.header_offset + 30 + name_len + extra_len)
            version = np.lib.format.read_magic(handle)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(handle)
            offset = handle.tell()
        if dtype.hasobject:
            return None
        return np.memmap(path, dtype=dtype, mode="r", shape=shape, offset=offset, order="F" if fortran else "C")
    except (KeyError, OSError, ValueError, zipfile.BadZipFile, struct.error):
        return None


class FeatureFile:
    """One file of region features: ``image_ids`` [N], ``num_regions`` [N], ``rows(idx)`` -> [n, R, D]."""

    def __init__(self, path: Path):
        self.path = path
        self._h5 = None
        if path.suffix == ".npz":
            try:
                self._store = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise UserError(f"{path}: unreadable .npz ({e}) — write it with numpy.savez") from None
            keys = set(self._store.files)
        else:
            h5py = _h5py()
            try:
                self._h5 = self._store = h5py.File(path, "r")
            except OSError as e:
                raise UserError(f"{path}: unreadable HDF5 ({e}) — check the file") from None
            keys = set(self._store.keys())
        names = {}
        for key, aliases in _ALIASES.items():
            names[key] = next((a for a in aliases if a in keys), None)
        if names["features"] is None or names["image_ids"] is None:
            raise UserError(f"{path}: needs arrays 'image_ids' [N] and 'features' [N, R, D] (found "
                            f"{', '.join(sorted(keys)) or 'none'}) — store the image id of every row")
        self._features = None
        if self._h5 is None:
            self._features = _npz_memmap(path, names["features"])
        if self._features is None:
            self._features = self._store[names["features"]]
        shape = tuple(self._features.shape)
        if len(shape) != 3:
            raise UserError(f"{path}: features have shape {shape}; expected [images, regions, width] — "
                            "stack each image's [n, D] regions, zero-padded to the same n")
        self.count, self.max_regions, self.width = shape
        self.image_ids = np.asarray(self._store[names["image_ids"]]).astype(np.int64).reshape(-1)
        if len(self.image_ids) != self.count:
            raise UserError(f"{path}: {len(self.image_ids)} image ids for {self.count} feature rows — "
                            "give one id per row")
        if names["num_regions"] is None:
            self.num_regions = np.full(self.count, self.max_regions, dtype=np.int64)
        else:
            self.num_regions = np.asarray(self._store[names["num_regions"]]).astype(np.int64).reshape(-1)
            if len(self.num_regions) != self.count:
                raise UserError(f"{path}: {len(self.num_regions)} region counts for {self.count} images — "
                                "give one count per row")
        bad = np.flatnonzero((self.num_regions < 1) | (self.num_regions > self.max_regions))
        if len(bad):
            raise UserError(f"{path}: image {self.image_ids[bad[0]]} has {self.num_regions[bad[0]]} valid "
                            f"regions; each image needs 1 to {self.max_regions} — fix num_regions")

    def rows(self, index: np.ndarray) -> np.ndarray:
        """Features of rows ``index`` (sorted, unique) as float32 ``[n, R, D]``."""
        if self._h5 is not None:
            return np.asarray(self._features[np.asarray(index)], dtype=np.float32)
        return np.asarray(self._features[index], dtype=np.float32)

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
        elif hasattr(self._store, "close"):
            self._store.close()


def open_features(paths: Sequence[Path], expected_width: int | None = None) -> list[FeatureFile]:
    """Open and cross-check feature files: one width, no image twice, and ``expected_width`` if given."""
    files = [FeatureFile(p) for p in paths]
    width = expected_width or files[0].width
    for f in files:
        if f.width != width:
            other = "feature_dim" if expected_width else str(files[0].path)
            raise UserError(f"{f.path}: region features are {f.width} wide but {other} says {width} — use "
                            "features of one extractor (bottom-up attention: 2048)")
    seen: dict[int, Path] = {}
    for f in files:
        ids, counts = np.unique(f.image_ids, return_counts=True)
        if (counts > 1).any():
            raise UserError(f"{f.path}: image {ids[counts > 1][0]} has two feature rows — keep one")
        for iid in ids[np.isin(ids, np.fromiter(seen, dtype=np.int64, count=len(seen)))][:1]:
            raise UserError(f"{f.path}: image {iid} also has features in {seen[int(iid)]} — keep one")
        seen.update((int(i), f.path) for i in ids)
    return files


# ----------------------------------------------------------------------------- prepare


def _answer_vocab(questions: Iterable[RawQuestion], size: int) -> tuple[list[str], list[int]]:
    counts = Counter(a for q in questions for a in (normalize_answer(x) for x in q.answers) if a)
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:size]
    return [a for a, _ in items], [n for _, n in items]


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "meta.json").is_file())):
        raise UserError(f"{out}: exists and is not an empty folder or a prepared data folder — choose a new out_dir")


def prepare_vqa(from_dir: str | os.PathLike, out_dir: str | os.PathLike, *, answers: int = 3000,
                min_freq: int = 1, feature_dim: int | None = None, source: str = "vqa",
                progress: bool = True, extra_meta: dict | None = None) -> dict:
    """Prepare the VQA v2 layout in ``from_dir`` into ``out_dir`` (see the module docstring).

    Args:
        answers: the answer vocabulary's size (the most frequent normalised training answers).
        min_freq: the least training count of a question word (rarer words become ``<unk>``).
        feature_dim: the expected feature width (None: whatever the files hold, one width for all).
    Returns the report written to meta.json, plus ``out``.
    """
    src, out = Path(from_dir), Path(out_dir)
    if answers < 1:
        raise UserError(f"answers={answers}: the answer vocabulary needs at least one entry")
    if min_freq < 1:
        raise UserError(f"min_freq={min_freq}: must be at least 1")
    _check_out(out)
    splits_raw, skipped, feature_paths = find_raw(src)
    data = {name: read_split(q, a) for name, (q, a) in sorted(splits_raw.items())}
    files = open_features(feature_paths, feature_dim)
    where = {}
    for fi, f in enumerate(files):
        where.update((int(iid), (fi, row)) for row, iid in enumerate(f.image_ids))
    answer_list, answer_counts = _answer_vocab(data["train"], answers)
    answer_index = {a: i for i, a in enumerate(answer_list)}
    qvocab = Vocabulary.build((tokenize_question(q.question) for q in data["train"]), min_freq=min_freq)

    with staged_folder(out) as tmp:
        report = _write(tmp, data, files, where, answer_index, qvocab, splits_raw, progress)
        atomic_write_bytes(tmp / "answers.json", json.dumps(
            {"format": "varattn-answers", "version": 1, "answers": answer_list, "counts": answer_counts},
            ensure_ascii=False, indent=0).encode("utf-8"))
        qvocab.save(tmp / "vocab.question.json")
        meta = {"task": "vqa", "format": FORMAT, "source": source, "from": str(src.resolve()),
                "inputs": {"questions": {k: v[0].name for k, v in splits_raw.items()},
                           "annotations": {k: v[1].name for k, v in splits_raw.items()},
                           "features": [p.name for p in feature_paths], "skipped": skipped},
                "settings": {"answers": answers, "min_freq": min_freq},
                "feature_dim": files[0].width, "max_regions": max(f.max_regions for f in files),
                "num_answers": len(answer_list), "question_vocab": len(qvocab), **report,
                **(extra_meta or {})}
        atomic_write_bytes(tmp / "meta.json", json.dumps(meta, indent=1).encode("utf-8"))
        for f in files:
            f.close()
    return {**meta, "out": str(out)}


def _write(tmp: Path, data: dict[str, list[RawQuestion]], files: list[FeatureFile], where: dict,
           answer_index: dict[str, int], qvocab: Vocabulary, splits_raw: dict, progress: bool) -> dict:
    """Write the split arrays, text and the features of every image a kept question asks about."""
    report: dict = {"splits": {}}
    kept: dict[str, list[RawQuestion]] = {}
    for name, questions in data.items():
        ids = [[answer_index.get(normalize_answer(a), -1) for a in q.answers] for q in questions]
        keep = [q for q, i in zip(questions, ids) if name != "train" or max(i) >= 0]
        for q in keep:
            if q.image_id not in where:
                raise UserError(f"{splits_raw[name][0]}: question {q.question_id} asks about image {q.image_id}, "
                                "which has no region features in " + ", ".join(str(f.path) for f in files) +
                                " — add its features or remove the question")
        kept[name] = keep
        report["splits"][name] = {"questions": len(keep), "dropped_no_answer_in_vocab": len(questions) - len(keep)}
    images = sorted({q.image_id for qs in kept.values() for q in qs})
    row_of = {iid: r for r, iid in enumerate(images)}
    max_regions = max(f.max_regions for f in files)
    width = files[0].width
    feats = np.lib.format.open_memmap(tmp / "features.npy", mode="w+", dtype=np.float16,
                                      shape=(len(images), max_regions, width))
    num_regions = np.zeros(len(images), dtype=np.int64)
    for fi, f in enumerate(files):
        mine = np.array([(where[iid][1], row_of[iid]) for iid in images if where[iid][0] == fi],
                        dtype=np.int64).reshape(-1, 2)
        mine = mine[np.argsort(mine[:, 0], kind="stable")]  # HDF5 reads want increasing rows
        starts = range(0, len(mine), 1024)
        if progress and len(mine) > 10_000:
            from tqdm import tqdm

            starts = tqdm(starts, desc=f"features {f.path.name}", unit="block", leave=False)
        for start in starts:
            src_rows, dst_rows = mine[start:start + 1024].T
            block = f.rows(src_rows)
            if not np.isfinite(block).all():
                bad = src_rows[np.flatnonzero(~np.isfinite(block).all(axis=(1, 2)))[0]]
                raise UserError(f"{f.path}: image {f.image_ids[bad]} has non-finite features — re-extract them")
            if np.abs(block).max(initial=0.0) > np.finfo(np.float16).max:
                raise UserError(f"{f.path}: features exceed the float16 range (65504) — rescale them")
            n = f.num_regions[src_rows]
            block[np.arange(f.max_regions)[None, :] >= n[:, None]] = 0.0
            feats[dst_rows, :f.max_regions] = block
            num_regions[dst_rows] = n
    feats.flush()
    del feats
    np.savez(tmp / "images.npz", image_ids=np.asarray(images, dtype=np.int64), num_regions=num_regions)
    for name, questions in kept.items():
        tokens = [qvocab.encode(tokenize_question(q.question)) or [qvocab.index("<unk>")] for q in questions]
        longest = max((len(t) for t in tokens), default=1)
        qarr = np.zeros((len(questions), longest), dtype=np.int32)
        for i, t in enumerate(tokens):
            qarr[i, :len(t)] = t
        answers = np.full((len(questions), ANSWERS_PER_QUESTION), -2, dtype=np.int32)
        for i, q in enumerate(questions):
            answers[i, :len(q.answers)] = [answer_index.get(normalize_answer(a), -1) for a in q.answers]
        gold = np.array([q.gold_region for q in questions], dtype=np.int32)
        image = np.array([row_of[q.image_id] for q in questions], dtype=np.int32)
        if (gold >= num_regions[image]).any():
            q = questions[int(np.flatnonzero(gold >= num_regions[image])[0])]
            raise UserError(f"{splits_raw[name][1]}: question {q.question_id} has gold_region {q.gold_region} "
                            f"but image {q.image_id} has only {num_regions[row_of[q.image_id]]} regions — fix it")
        np.savez(tmp / f"{name}.npz", questions=qarr, lengths=np.array([len(t) for t in tokens], dtype=np.int32),
                 image=image, answers=answers, question_id=np.array([q.question_id for q in questions], np.int64),
                 gold_region=gold)
        lines = (json.dumps({"question_id": q.question_id, "image_id": q.image_id, "question": q.question,
                             "answers": q.answers}, ensure_ascii=False) for q in questions)
        atomic_write_bytes(tmp / f"{name}.text.jsonl", "".join(f"{ln}\n" for ln in lines).encode("utf-8"))
        covered = float((answers >= 0).any(1).mean()) if len(questions) else 0.0
        report["splits"][name].update(images=len({q.image_id for q in questions}), answer_coverage=covered,
                                      gold_regions=bool(len(gold) and (gold >= 0).all()))
    report["images"] = len(images)
    return report
