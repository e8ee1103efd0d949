"""The embedded synthetic corpus: deterministic, and its gold alignments follow the rules."""

from collections import Counter

import pytest

from varattn.data.text.pharaoh import format_links, parse_links
from varattn.data.text.synthetic import SyntheticLanguage, generate


@pytest.fixture(scope="module")
def corpus():
    return generate(2000, seed=11)


def test_deterministic_from_seed(corpus):
    lang, pairs = corpus
    lang2, pairs2 = generate(2000, seed=11)
    assert lang2.dictionary == lang.dictionary
    assert pairs2 == pairs
    _, other = generate(50, seed=12)
    assert [p.src for p in other] != [p.src for p in pairs[:50]]


def test_shape_of_the_corpus(corpus):
    lang, pairs = corpus
    assert all(4 <= len(p.src) <= 20 for p in pairs)
    assert len({tuple(p.src) for p in pairs}) == len(pairs)  # distinct sentences
    src_types = {w for p in pairs for w in p.src}
    tgt_types = {w for p in pairs for w in p.tgt}
    assert 150 <= len(src_types) <= 400 and 150 <= len(tgt_types) <= 450
    # rules that must occur: vanishing words, two-word translations, inserted markers, reordering
    assert any(w in lang.vanishing for p in pairs for w in p.src)
    assert any(len(lang.dictionary[w]) == 2 for p in pairs for w in p.src)
    assert any(lang.object_marker in p.tgt for p in pairs)
    assert any(any(i > j + 2 for i, j in p.alignment) for p in pairs)


def test_alignments_follow_the_rules(corpus):
    lang, pairs = corpus
    for p in pairs:
        links = set(p.alignment)
        assert parse_links(format_links(links)) == links
        for i, j in links:
            assert 0 <= i < len(p.src) and 0 <= j < len(p.tgt)
            assert p.tgt[j] in lang.dictionary[p.src[i]]
        by_src = Counter(i for i, _ in links)
        by_tgt = Counter(j for _, j in links)
        for i, w in enumerate(p.src):
            assert by_src[i] == len(lang.dictionary[w])  # vanishing words: 0 links; compounds: 2
            if by_src[i] == 2:  # a two-word translation is contiguous and in order
                js = sorted(j for a, j in links if a == i)
                assert js[1] == js[0] + 1 and tuple(p.tgt[j] for j in js) == lang.dictionary[w]
        for j, w in enumerate(p.tgt):
            if w in lang.inserted:
                assert by_tgt[j] == 0
            else:
                assert by_tgt[j] == 1
        assert p.src[-1] == p.tgt[-1] == "." and (len(p.src) - 1, len(p.tgt) - 1) in links


def test_reordering_rules():
    lang = SyntheticLanguage(5)
    adj, noun = set(lang.words["adj"]), set(lang.words["noun"])
    verbs = set(lang.words["vt"]) | set(lang.words["vi"])
    _, pairs = generate(300, seed=5)
    checked_adj = checked_verb = 0
    for p in pairs:
        src_of = {j: i for i, j in p.alignment}
        for i in range(len(p.src) - 1):
            if p.src[i] in adj and p.src[i + 1] in noun:  # adjective-noun swap
                ja = min(j for a, j in p.alignment if a == i)
                jn = min(j for a, j in p.alignment if a == i + 1)
                assert jn < ja
                checked_adj += 1
        for i, w in enumerate(p.src):
            if w in verbs:  # the verb follows its object, PP and adverb (nothing after it but sub/conj/.)
                j = max(jj for a, jj in p.alignment if a == i)
                nxt = p.tgt[j + 1] if j + 1 < len(p.tgt) else None
                assert (
                    nxt is None
                    or nxt == "."
                    or p.src[src_of[j + 1]] in set(lang.words["sub"]) | set(lang.words["conj"])
                )
                checked_verb += 1
    assert checked_adj > 20 and checked_verb > 200
