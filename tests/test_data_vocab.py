"""Vocabularies, tokenisation, BPE and the Pipeline."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from varattn.data.text.tokenize import Pipeline, learn_bpe, load_bpe, moses_detokenize, moses_tokenize, remove_bpe
from varattn.data.vocab import BOS, EOS, PAD, SPECIALS, UNK, Vocabulary
from varattn.errors import UserError

SENTS = [["a", "b", "b", "c"], ["c", "c", "d"], ["b", "c"]]


def test_specials_are_fixed():
    v = Vocabulary.build(SENTS)
    assert (PAD, UNK, BOS, EOS) == (0, 1, 2, 3)
    assert v.itos[:4] == list(SPECIALS) == ["<pad>", "<unk>", "<s>", "</s>"]
    # by count, ties by string: c=4, b=3, a=1, d=1
    assert v.itos[4:] == ["c", "b", "a", "d"]
    assert len(v) == 8


def test_min_freq_and_max_size():
    assert Vocabulary.build(SENTS, min_freq=2).itos[4:] == ["c", "b"]
    assert Vocabulary.build(SENTS, max_size=1).itos[4:] == ["c"]
    assert Vocabulary.build({"x": 2, "<unk>": 9}).itos[4:] == ["x"]


def test_encode_decode():
    v = Vocabulary.build(SENTS)
    ids = v.encode(["a", "zzz", "c"])
    assert ids == [v.index("a"), UNK, v.index("c")]
    assert v.decode(ids) == ["a", "<unk>", "c"]
    assert v.decode([BOS, ids[0], PAD, EOS, ids[2]]) == ["a"]
    assert v.decode([BOS, ids[0], EOS], strip_specials=False) == ["<s>", "a", "</s>"]


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.lists(st.text(min_size=1, max_size=5).filter(lambda t: t.strip() == t and t), max_size=6),
        max_size=8,
    )
)
def test_round_trip_property(tmp_path_factory, sents):
    v = Vocabulary.build(sents)
    p = tmp_path_factory.mktemp("v") / "vocab.json"
    v.save(p)
    w = Vocabulary.load(p)
    assert w == v and w.counts == v.counts
    for s in sents:
        expected = [t if t in v else "<unk>" for t in s]
        assert w.decode(w.encode(s), strip_specials=False) == expected


@pytest.mark.parametrize(
    "content, match",
    [
        ('{"format": "varattn-vocab", "version": 1, "tokens": [', r":1: invalid JSON"),
        ('{\n"format": "varattn-vocab",\n"tokens": ["a" "b"]}', r":3: invalid JSON"),
        ('["<pad>"]', "not a varattn vocabulary"),
        ('{"format": "varattn-vocab", "version": 1, "tokens": ["a", "b"]}', "first tokens"),
        (
            '{"format": "varattn-vocab", "version": 1, '
            '"tokens": ["<pad>", "<unk>", "<s>", "</s>", "x", "x"]}',
            "duplicate",
        ),
        ('{"format": "varattn-vocab", "version": 2, "tokens": []}', "version"),
    ],
)
def test_corrupt_vocabulary(tmp_path, content, match):
    p = tmp_path / "vocab.src.json"
    p.write_text(content)
    with pytest.raises(UserError, match=match) as e:
        Vocabulary.load(p)
    assert str(e.value).startswith(str(p)) and "\n" not in str(e.value)


def test_missing_vocabulary(tmp_path):
    with pytest.raises(UserError, match="vocabulary file not found"):
        Vocabulary.load(tmp_path / "vocab.src.json")


def test_moses_tokenize_and_detokenize():
    assert moses_tokenize("Hello, world's end.", "en") == "Hello , world 's end ."
    assert moses_tokenize("world's", "en", escape=True) == "world &apos;s"
    assert moses_tokenize("a well-known fact", "en") == "a well-known fact"  # no aggressive dashes
    assert moses_detokenize("Hello , world &apos;s end .".split(), "en") == "Hello, world's end."


def test_remove_bpe():
    assert remove_bpe("un@@ believ@@ able thing@@") == "unbelievable thing"
    assert remove_bpe("plain words") == "plain words"


def test_bpe_learn_apply(tmp_path):
    lines = ["the lower lowest newer newest"] * 5 + ["wider widest low new"] * 3
    codes = tmp_path / "bpe.codes"
    n = learn_bpe(lines, codes, 20)
    assert 0 < n <= 20
    assert codes.read_text().startswith("#version:")
    pipe = Pipeline("en", "en", bpe_codes=codes)
    toks = pipe.encode_source("lowester newest")
    assert any(t.endswith("@@") for t in toks)
    assert remove_bpe(" ".join(toks)) == "lowester newest"


def test_malformed_bpe_codes(tmp_path):
    codes = tmp_path / "bpe.codes"
    codes.write_text("#version: 0.2\na b\nthree symbols here\n")
    with pytest.raises(UserError, match=r"bpe\.codes:3: not a BPE merge"):
        load_bpe(codes)


def test_pipeline_round_trip(tmp_path):
    codes = tmp_path / "bpe.codes"
    learn_bpe(["ein kleines haus am see", "a small house by the lake"] * 4, codes, 15)
    pipe = Pipeline("de", "en", tokenize=True, lowercase=True, bpe_codes=codes, escape=True)
    d = pipe.to_dict()
    assert d["bpe_codes"] == "bpe.codes"
    json.dumps(d)
    again = Pipeline.from_dict(d, tmp_path)
    assert again == pipe
    src = again.encode_source("Ein kleines Haus, am See!")
    assert remove_bpe(" ".join(src)) == "ein kleines haus , am see !"
    tgt = again.encode_target("The house's lake.")
    assert again.decode_target(tgt) == "the house &apos;s lake ."
    assert again.decode_target(tgt, detokenize=True) == "the house's lake."
    (tmp_path / "bpe.codes").unlink()
    with pytest.raises(UserError, match="BPE codes file missing"):
        Pipeline.from_dict(d, tmp_path)


def test_pipeline_identity():
    pipe = Pipeline()
    assert pipe.encode_source("  Hello ,  World  ") == ["Hello", ",", "World"]
    assert pipe.decode_target(["a@@", "b", "c"], detokenize=True) == "ab c"
