"""VQA data: the VQA v2 layout on small fixture files (JSON + npz, HDF5 when h5py is installed), the
errors for mismatched files, answer normalisation, the synthetic corpus and the prepared folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from varattn.data.vqa.reader import normalize_answer, prepare_vqa, tokenize_question
from varattn.data.vqa.prepared import QuestionBatcher, collate_vqa, load_vqa
from varattn.errors import UserError

WIDTH = 16


@pytest.fixture(scope="module")
def vqa_synthetic(tmp_path_factory) -> Path:
    from varattn.data.vqa.synthetic import prepare_vqa_synthetic

    out = tmp_path_factory.mktemp("vqa") / "synthetic"
    prepare_vqa_synthetic(out, questions=300, feature_dim=32, seed=2)
    return out


def _answers(*pairs):
    out = []
    for answer, count in pairs:
        out += [answer] * count
    return [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(out)]


def write_layout(root: Path, *, features: str = "npz", width: int = WIDTH) -> Path:
    """Three training questions about two images, two validation questions about a third."""
    root.mkdir(parents=True, exist_ok=True)
    train_q = [{"image_id": 10, "question": "What color is the cat?", "question_id": 100},
               {"image_id": 10, "question": "How many dogs are there?", "question_id": 101},
               {"image_id": 20, "question": "Is it raining?", "question_id": 102}]
    train_a = [{"question_id": 100, "image_id": 10, "answers": _answers(("Black.", 6), ("white", 3), ("grey", 1))},
               {"question_id": 101, "image_id": 10, "answers": _answers(("two", 7), ("3", 3))},
               {"question_id": 102, "image_id": 20, "answers": _answers(("yes", 9), ("no", 1))}]
    val_q = [{"image_id": 30, "question": "What is the man's hat?", "question_id": 200},
             {"image_id": 30, "question": "Is the sky blue?", "question_id": 201}]
    val_a = [{"question_id": 200, "image_id": 30, "answers": _answers(("fedora", 10))},
             {"question_id": 201, "image_id": 30, "answers": _answers(("yes", 4), ("no", 6))}]
    for tag, qs, anns in (("train2014", train_q, train_a), ("val2014", val_q, val_a)):
        (root / f"v2_OpenEnded_mscoco_{tag}_questions.json").write_text(json.dumps({"questions": qs}))
        (root / f"v2_mscoco_{tag}_annotations.json").write_text(json.dumps({"annotations": anns}))
    (root / "v2_OpenEnded_mscoco_test2015_questions.json").write_text(json.dumps({"questions": []}))
    rng = np.random.default_rng(0)
    arrays = {"image_ids": np.array([10, 20, 30]), "features": rng.random((3, 4, width)).astype(np.float32),
              "num_regions": np.array([4, 2, 3])}
    arrays["features"][1, 2:] = 99.0  # padding rows: must not survive preparation
    if features == "npz":
        np.savez(root / "trainval_36.npz", **arrays)
    else:
        h5py = pytest.importorskip("h5py", reason="HDF5 region features need h5py (optional dependency)")
        with h5py.File(root / "trainval_36.h5", "w") as f:
            for key, value in arrays.items():
                f[key] = value
    return root


def test_normalize_answer_and_tokenize():
    assert normalize_answer("Two.") == "2"
    assert normalize_answer(" The Red  Car ") == "red car"
    assert normalize_answer("3.5") == "3.5"
    assert normalize_answer("yes!") == "yes"
    assert tokenize_question("What is the man's hat?") == ["what", "is", "the", "man", "'s", "hat"]


@pytest.mark.parametrize("features", ["npz", "hdf5"])
def test_prepare_real_layout(tmp_path, features):
    raw = write_layout(tmp_path / "raw", features=features)
    report = prepare_vqa(raw, tmp_path / "out", answers=4)
    assert report["task"] == "vqa" and report["feature_dim"] == WIDTH and report["max_regions"] == 4
    assert report["inputs"]["skipped"] == ["v2_OpenEnded_mscoco_test2015_questions.json"]
    data = load_vqa(tmp_path / "out")
    # counted over all ten annotators of the training questions: yes 9, 2 7, black 6, then 3 and white 3
    assert data.answers == ["yes", "2", "black", "3"]
    assert data.split_names == ["train", "valid"]
    train = data.split("train")
    assert len(train) == 3 and train.answers.shape == (3, 10)
    assert list(train.answers[1]) == [1] * 7 + [3] * 3
    assert (train.answers[0] == -1).sum() == 4  # white and grey are outside the 4-answer vocabulary
    valid = data.split("valid")
    assert len(valid) == 2 and (valid.answers[0] == -1).all()  # kept: evaluation splits keep every question
    batch = collate_vqa(train, [2, 0])
    assert batch.features.shape == (2, 4, WIDTH) and batch.regions.tolist() == [2, 4]
    assert batch.region_mask.tolist() == [[True, True, False, False], [True] * 4]
    assert (batch.features[0, 2:] == 0).all()  # padding regions zeroed
    if features == "npz":  # numpy.savez stores members uncompressed: read through a memory map
        from varattn.data.vqa.reader import FeatureFile

        assert isinstance(FeatureFile(raw / "trainval_36.npz")._features, np.memmap)
    raw_feats = np.load(raw / "trainval_36.npz")["features"] if features == "npz" else None
    if raw_feats is not None:
        assert np.allclose(batch.features[1].numpy(), raw_feats[0], atol=1e-3)  # float16 storage
    words = data.question_vocab.decode(batch.questions[1].tolist())
    assert words == ["what", "color", "is", "the", "cat"]
    assert train.texts()[0]["answers"][0] == "Black."


def test_run_copy_loads_without_features(tmp_path):
    prepare_vqa(write_layout(tmp_path / "raw"), tmp_path / "out")
    data = load_vqa(tmp_path / "out")
    data.copy_essentials(tmp_path / "run" / "data")
    copy = load_vqa(tmp_path / "run" / "data")
    assert copy.answers == data.answers and copy.question_vocab == data.question_vocab
    assert copy.meta["run_copy"] and copy.feature_dim == WIDTH
    with pytest.raises(UserError, match="split file missing"):
        copy.split("train")


def _error(tmp_path, match, **kwargs):
    with pytest.raises(UserError, match=match) as info:
        prepare_vqa(tmp_path / "raw", tmp_path / "out", **kwargs)
    assert "\n" not in str(info.value)


def test_question_whose_image_has_no_features(tmp_path):
    raw = write_layout(tmp_path / "raw")
    arrays = dict(np.load(raw / "trainval_36.npz"))
    np.savez(raw / "trainval_36.npz", **{k: v[:2] for k, v in arrays.items()})
    _error(tmp_path, r"question 200 asks about image 30, which has no region features in .*trainval_36.npz")


def test_wrong_feature_width(tmp_path):
    raw = write_layout(tmp_path / "raw")
    _error(tmp_path, r"trainval_36.npz: region features are 16 wide but feature_dim says 2048", feature_dim=2048)
    np.savez(raw / "val_36.npz", image_ids=np.array([40]), features=np.zeros((1, 4, 8), np.float32))
    _error(tmp_path, r"val_36.npz: region features are 8 wide but .*trainval_36.npz says 16")


def test_feature_file_errors(tmp_path):
    raw = write_layout(tmp_path / "raw")
    np.savez(raw / "trainval_36.npz", image_ids=np.array([10, 20, 30]), features=np.zeros((3, WIDTH)))
    _error(tmp_path, r"features have shape \(3, 16\); expected \[images, regions, width\]")
    np.savez(raw / "trainval_36.npz", image_ids=np.array([10, 20, 30]), features=np.zeros((3, 4, WIDTH)),
             num_regions=np.array([4, 5, 1]))
    _error(tmp_path, r"image 20 has 5 valid regions; each image needs 1 to 4")
    np.savez(raw / "trainval_36.npz", features=np.zeros((3, 4, WIDTH)))
    _error(tmp_path, r"needs arrays 'image_ids'")


def test_annotation_errors(tmp_path):
    raw = write_layout(tmp_path / "raw")
    path = raw / "v2_mscoco_val2014_annotations.json"
    anns = json.loads(path.read_text())["annotations"]
    path.write_text(json.dumps({"annotations": anns[:1]}))
    _error(tmp_path, r"question 201 has no annotation in .*v2_mscoco_val2014_annotations.json")
    anns[1]["answers"] = anns[1]["answers"] * 2
    path.write_text(json.dumps({"annotations": anns}))
    _error(tmp_path, r"question 201 needs 1 to 10 answers")
    path.write_text("{\"annotations\": [")
    _error(tmp_path, r"v2_mscoco_val2014_annotations.json:1: invalid JSON")


def test_hdf5_without_h5py_is_a_clear_error(tmp_path, monkeypatch):
    import builtins

    raw = write_layout(tmp_path / "raw")
    (raw / "trainval_36.npz").rename(raw / "features.h5")
    real_import = builtins.__import__

    def no_h5py(name, *args, **kwargs):
        if name == "h5py":
            raise ImportError("no h5py")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_h5py)
    _error(tmp_path, r"HDF5 region features need the h5py package — pip install h5py")


def test_question_batcher_covers_every_question_once():
    batcher = QuestionBatcher(103, 10, shuffle=True, seed=4)
    batches = batcher.batches(2)
    assert sorted(np.concatenate(batches).tolist()) == list(range(103))
    assert [b.tolist() for b in batches] == [b.tolist() for b in QuestionBatcher(103, 10, seed=4).batches(2)]
    assert [b.tolist() for b in batches] != [b.tolist() for b in batcher.batches(3)]


def test_synthetic_corpus(vqa_synthetic):
    data = load_vqa(vqa_synthetic)
    meta = data.meta
    assert meta["source"] == "vqa-synthetic" and meta["feature_dim"] == 32
    assert (vqa_synthetic / "raw" / "v2_OpenEnded_mscoco_train_questions.json").is_file()
    scenes = json.loads((vqa_synthetic / "raw" / "scenes.json").read_text())
    train = data.split("train")
    assert train.has_gold_regions and len(train) == meta["splits"]["train"]["questions"]
    texts = train.texts()
    for i in range(20):  # the answer is a function of the gold region's attributes
        question, answers = texts[i]["question"], texts[i]["answers"]
        obj = scenes[str(texts[i]["image_id"])][int(train.gold_region[i])]
        majority = max(set(answers), key=answers.count)
        if question.startswith(("what color", "what is the color")):
            assert obj["shape"] in question
        if question.startswith("where"):
            assert obj["colour"] in question and obj["shape"] in question
        assert majority in (*obj.values(), "yes", "no") or majority == obj["position"]
    batch = collate_vqa(train, range(8))
    assert (batch.gold_region < batch.regions).all()
    assert torch.isfinite(batch.features).all()
