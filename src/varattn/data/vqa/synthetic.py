"""A synthetic VQA corpus in the VQA v2 layout, whose answers depend on one known region.

Each image is a scene of ``min_regions``..``max_regions`` objects. An object has a colour (8), a shape
(6), a size (3) and a position (a cell of a 3 x 3 grid); its region feature is the sum of one fixed random
code vector per attribute value (drawn once from the seed; variance 1/4 per dimension, so the four
codes sum to unit variance) plus Gaussian noise of standard deviation ``noise``, in ``feature_dim``
dimensions (the rows after the last object are
zero padding). The regions of a scene are in random order.

Every question names an object by attributes that are unique in its scene and asks about another one:

=================================== ========= ============
question                            names by  answer
=================================== ========= ============
what color is the {shape}?          shape     colour
what shape is the {colour} object?  colour    shape
what size is the {colour} {shape}?  both      size
where is the {colour} {shape}?      both      position
is the {shape} {colour}?            shape     yes / no
=================================== ========= ============

so the answer is a function of one region, recorded as ``"gold_region"`` (its index among the image's
regions) in the annotations. Ten annotators answer each question; each errs independently with a rate
drawn per question from ``[0, annotator_noise]``, giving another answer of the same kind. The generator
writes ``v2_OpenEnded_mscoco_{train,valid,test}_questions.json``, ``v2_mscoco_{...}_annotations.json``,
``features.npz`` (``image_ids``, ``features`` [N, max_regions, feature_dim] float32, ``num_regions``) and
``scenes.json`` (the objects of every image); everything is a pure function of the settings.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from varattn.errors import UserError

__all__ = ["COLOURS", "SHAPES", "SIZES", "POSITIONS", "generate_vqa_synthetic", "prepare_vqa_synthetic"]

COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "white", "black")
SHAPES = ("square", "circle", "triangle", "star", "heart", "cross")
SIZES = ("small", "medium", "large")
POSITIONS = ("top left", "top", "top right", "left", "center", "right", "bottom left", "bottom",
             "bottom right")
_ATTRIBUTES = {"colour": COLOURS, "shape": SHAPES, "size": SIZES, "position": POSITIONS}
# (templates, attributes that name the object, attribute asked about; "yesno" asks about colour)
_KINDS = (
    (("what color is the {shape}?", "what is the color of the {shape}?"), ("shape",), "colour"),
    (("what shape is the {colour} object?", "which shape is {colour}?"), ("colour",), "shape"),
    (("what size is the {colour} {shape}?", "how big is the {colour} {shape}?"), ("colour", "shape"), "size"),
    (("where is the {colour} {shape}?", "where in the picture is the {colour} {shape}?"), ("colour", "shape"),
     "position"),
    (("is the {shape} {colour}?",), ("shape",), "yesno"),
)
SPLITS = (("train", 1.0), ("valid", 0.2), ("test", 0.2))


def _scene(rng: np.random.Generator, min_regions: int, max_regions: int) -> list[dict]:
    n = int(rng.integers(min_regions, max_regions + 1))
    return [{name: int(rng.integers(len(values))) for name, values in _ATTRIBUTES.items()} for _ in range(n)]


def _question(rng: np.random.Generator, scene: list[dict], annotator_noise: float):
    """(question text, correct answer, ten annotator answers, gold region) or None if no object fits."""
    for kind in rng.permutation(len(_KINDS)):
        templates, keys, asked = _KINDS[kind]
        signature = [tuple(o[k] for k in keys) for o in scene]
        unique = [i for i, s in enumerate(signature) if signature.count(s) == 1]
        if not unique:
            continue
        gold = int(rng.choice(unique))
        obj = scene[gold]
        words = {"colour": COLOURS[obj["colour"]], "shape": SHAPES[obj["shape"]]}
        if asked == "yesno":
            asked_colour = obj["colour"] if rng.random() < 0.5 else int(rng.integers(len(COLOURS)))
            words["colour"] = COLOURS[asked_colour]
            choices, correct = ("yes", "no"), "yes" if asked_colour == obj["colour"] else "no"
        else:
            choices, correct = _ATTRIBUTES[asked], _ATTRIBUTES[asked][obj[asked]]
        text = templates[int(rng.integers(len(templates)))].format(**words)
        rate = rng.uniform(0.0, annotator_noise)
        others = [c for c in choices if c != correct]
        answers = [str(rng.choice(others)) if rng.random() < rate else correct for _ in range(10)]
        return text, correct, answers, gold
    return None


def generate_vqa_synthetic(out_dir: str | os.PathLike, *, questions: int = 10000, seed: int = 1,
                           feature_dim: int = 64, min_regions: int = 4, max_regions: int = 12,
                           noise: float = 0.5, annotator_noise: float = 0.3,
                           questions_per_image: int = 4) -> dict:
    """Write the raw synthetic corpus into ``out_dir`` (``questions`` training questions; valid and test
    get a fifth as many each) and return its settings and counts."""
    if questions < 10:
        raise UserError(f"questions={questions}: the synthetic corpus needs at least 10 training questions")
    if feature_dim < 8:
        raise UserError(f"feature_dim={feature_dim}: the synthetic features need at least 8 dimensions")
    if not 2 <= min_regions <= max_regions:
        raise UserError(f"regions {min_regions}..{max_regions}: need 2 <= min_regions <= max_regions")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 8])
    codes = {name: 0.5 * rng.standard_normal((len(values), feature_dim)).astype(np.float32)
             for name, values in _ATTRIBUTES.items()}
    image_ids, features, num_regions, scenes = [], [], [], {}
    counts = {}
    next_image, next_question = 1, 1
    for split, share in SPLITS:
        wanted = max(1, round(questions * share))
        qs, anns = [], []
        while len(qs) < wanted:
            scene = _scene(rng, min_regions, max_regions)
            feats = np.zeros((max_regions, feature_dim), dtype=np.float32)
            for r, obj in enumerate(scene):
                feats[r] = sum(codes[k][obj[k]] for k in _ATTRIBUTES)
            feats[:len(scene)] += noise * rng.standard_normal((len(scene), feature_dim)).astype(np.float32)
            iid = next_image
            next_image += 1
            asked = 0
            for _ in range(int(rng.integers(1, 2 * questions_per_image))):
                made = _question(rng, scene, annotator_noise)
                if made is None or len(qs) >= wanted:
                    continue
                text, correct, answers, gold = made
                qs.append({"image_id": iid, "question": text, "question_id": next_question})
                anns.append({"question_id": next_question, "image_id": iid, "multiple_choice_answer": correct,
                             "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": k + 1}
                                         for k, a in enumerate(answers)],
                             "answer_type": "yes/no" if correct in ("yes", "no") else "other",
                             "gold_region": gold})
                next_question += 1
                asked += 1
            if asked:
                image_ids.append(iid)
                features.append(feats)
                num_regions.append(len(scene))
                scenes[str(iid)] = [{k: _ATTRIBUTES[k][o[k]] for k in _ATTRIBUTES} for o in scene]
        info = {"description": "varattn synthetic VQA", "data_subtype": split}
        (out / f"v2_OpenEnded_mscoco_{split}_questions.json").write_text(
            json.dumps({"info": info, "task_type": "Open-Ended", "questions": qs}), encoding="utf-8")
        (out / f"v2_mscoco_{split}_annotations.json").write_text(
            json.dumps({"info": info, "annotations": anns}), encoding="utf-8")
        counts[split] = len(qs)
    np.savez(out / "features.npz", image_ids=np.asarray(image_ids, dtype=np.int64),
             features=np.stack(features), num_regions=np.asarray(num_regions, dtype=np.int64))
    (out / "scenes.json").write_text(json.dumps(scenes), encoding="utf-8")
    settings = {"questions": questions, "seed": seed, "feature_dim": feature_dim, "min_regions": min_regions,
                "max_regions": max_regions, "noise": noise, "annotator_noise": annotator_noise,
                "questions_per_image": questions_per_image}
    return {"settings": settings, "questions": counts, "images": len(image_ids),
            "chance_region_accuracy": float(np.mean([1.0 / n for n in num_regions]))}


def prepare_vqa_synthetic(out_dir: str | os.PathLike, *, questions: int = 10000, seed: int = 1,
                          feature_dim: int = 64, answers: int = 3000, min_freq: int = 1, progress: bool = True,
                          **settings) -> dict:
    """Generate the synthetic corpus and prepare it with :func:`varattn.data.vqa.reader.prepare_vqa`, exactly as
    real VQA v2 files are; the generated raw files are kept in ``out_dir/raw``."""
    from varattn.data.vqa.reader import prepare_vqa

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    raw = Path(tempfile.mkdtemp(prefix=f".{out.name}.raw.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(raw, 0o777 & ~umask)
    try:
        generated = generate_vqa_synthetic(raw, questions=questions, seed=seed, feature_dim=feature_dim,
                                           **settings)
        report = prepare_vqa(raw, out, answers=answers, min_freq=min_freq, source="vqa-synthetic",
                             progress=progress, extra_meta={"from": "raw/ (generated)", "synthetic": generated})
        shutil.move(str(raw), str(out / "raw"))
    finally:
        shutil.rmtree(raw, ignore_errors=True)
    return report
