"""The embedded default corpus: a synthetic translation task with gold word alignments.

A source language with a small grammar and a target language derived from it by rules, both made of
pseudo-words drawn from a seed (no download, no external data):

* **Dictionary.** Every source word has a fixed translation: usually one target word; some nouns become
  two target words (compounds), some verbs a stem plus a separable particle; two of the six determiners
  *vanish* (no translation, no alignment link).
* **Reordering.** Adjectives follow their noun (``det adj noun`` -> ``det noun adj``); prepositions become
  postpositions (``prep NP`` -> ``NP prep``); the verb moves to the end of its clause, after the object,
  the prepositional phrase and the adverb (``S V O Adv PP`` -> ``S O PP Adv V``), in main and subordinate
  clauses alike.
* **Insertion.** The target marks every direct object with a particle
  (:attr:`SyntheticLanguage.object_marker`) that translates no source word, so it has no alignment link.

Source grammar (each optional part with a fixed probability)::

    sentence := clause [conj clause] "."
    clause   := NP verb [NP_obj] [adv] [prep NP] [sub clause]     (one level of subordination)
    NP       := det [adj [adj]] noun

Gold alignments are Pharaoh links ``i-j``: source token i is translated (in part) by target token j.
Everything is a pure function of the seed (``random.Random``), so the same seed gives the same corpus on
every machine and Python version.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator

__all__ = ["SyntheticPair", "SyntheticLanguage", "generate"]

# class name -> (number of words, syllables (min, max))
_CLASSES = {
    "det": (6, (1, 1)),
    "adj": (50, (2, 3)),
    "noun": (120, (1, 3)),
    "vt": (40, (2, 3)),
    "vi": (20, (2, 3)),
    "adv": (15, (2, 3)),
    "prep": (10, (1, 1)),
    "sub": (4, (1, 2)),
    "conj": (2, (1, 1)),
}
_N_VANISHING_DETS = 2
_COMPOUND_NOUNS = 0.15
_PARTICLE_VERBS = 0.2
_N_PARTICLES = 3

_SRC_ONSETS = "b d f g k l m n p r s t v".split()
_SRC_VOWELS = "a e i o u".split()
_SRC_CODAS = ["", "", "", "n", "r", "s", "l"]
_TGT_ONSETS = "ch sh z h j w y k t m n x".split()
_TGT_VOWELS = "a e i o u y ai ou".split()
_TGT_CODAS = ["", "", "", "ng", "k", "m"]


@dataclass(frozen=True)
class SyntheticPair:
    """One sentence pair: source tokens, target tokens and gold links (source i, target j), sorted."""

    src: list[str]
    tgt: list[str]
    alignment: list[tuple[int, int]]


class _W:
    """A source word occurrence; ``pos`` is set when the source sentence is linearised."""

    __slots__ = ("word", "pos")

    def __init__(self, word: str) -> None:
        self.word = word
        self.pos = -1


def _word_maker(rng: random.Random, onsets, vowels, codas, taken: set[str]):
    def make(syllables: tuple[int, int]) -> str:
        for _ in range(10_000):
            k = rng.randint(*syllables)
            w = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(k)) + rng.choice(codas)
            if len(w) >= 2 and w not in taken:
                taken.add(w)
                return w
        raise RuntimeError("could not make a new pseudo-word")  # pragma: no cover

    return make


class SyntheticLanguage:
    """A source lexicon, its dictionary into the target language and the reordering rules.

    Attributes:
        words: class name -> list of source words (``det adj noun vt vi adv prep sub conj``).
        dictionary: source word -> tuple of target words (empty for a vanishing word); ``"."`` -> ``(".",)``.
        object_marker: the target particle inserted after each direct object (no alignment link).
        inserted: the set of target words inserted by rules (``{object_marker}``).
    """

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        src_taken: set[str] = set()
        tgt_taken: set[str] = set()
        src_word = _word_maker(rng, _SRC_ONSETS, _SRC_VOWELS, _SRC_CODAS, src_taken)
        tgt_word = _word_maker(rng, _TGT_ONSETS, _TGT_VOWELS, _TGT_CODAS, tgt_taken)

        self.words: dict[str, list[str]] = {}
        self.dictionary: dict[str, tuple[str, ...]] = {".": (".",)}
        self.object_marker = tgt_word((1, 1))
        self.inserted = frozenset({self.object_marker})
        particles = [tgt_word((1, 1)) for _ in range(_N_PARTICLES)]
        for cls, (n, syl) in _CLASSES.items():
            ws = [src_word(syl) for _ in range(n)]
            self.words[cls] = ws
            for k, w in enumerate(ws):
                if cls == "det" and k < _N_VANISHING_DETS:
                    self.dictionary[w] = ()
                elif cls == "noun" and rng.random() < _COMPOUND_NOUNS:
                    self.dictionary[w] = (tgt_word((1, 2)), tgt_word((1, 2)))
                elif cls == "vt" and rng.random() < _PARTICLE_VERBS:
                    self.dictionary[w] = (tgt_word(syl), rng.choice(particles))
                else:
                    self.dictionary[w] = (tgt_word(syl),)
        # Zipf-like word frequencies within each class (rank r has weight 1 / (r + 1) ** 0.7).
        self._weights = {
            cls: [1.0 / (r + 1) ** 0.7 for r in range(len(ws))] for cls, ws in self.words.items()
        }
        self.vanishing = frozenset(w for w, t in self.dictionary.items() if not t)

    def _pick(self, rng: random.Random, cls: str) -> _W:
        return _W(rng.choices(self.words[cls], weights=self._weights[cls])[0])

    # --- sentence structure ----------------------------------------------------------------------

    def _np(self, rng: random.Random) -> dict:
        adjs = []
        if rng.random() < 0.4:
            adjs.append(self._pick(rng, "adj"))
            if rng.random() < 0.25:
                adjs.append(self._pick(rng, "adj"))
        return {"det": self._pick(rng, "det"), "adjs": adjs, "noun": self._pick(rng, "noun")}

    def _clause(self, rng: random.Random, depth: int) -> dict:
        transitive = rng.random() < 0.6
        return {
            "subj": self._np(rng),
            "verb": self._pick(rng, "vt" if transitive else "vi"),
            "obj": self._np(rng) if transitive else None,
            "adv": self._pick(rng, "adv") if rng.random() < 0.2 else None,
            "pp": (self._pick(rng, "prep"), self._np(rng)) if rng.random() < 0.3 else None,
            "sub": (self._pick(rng, "sub"), self._clause(rng, depth + 1))
            if depth == 0 and rng.random() < 0.25
            else None,
        }

    @staticmethod
    def _src_np(np: dict) -> Iterator[_W]:
        yield np["det"]
        yield from np["adjs"]
        yield np["noun"]

    @staticmethod
    def _tgt_np(np: dict) -> Iterator[_W]:
        yield np["det"]
        yield np["noun"]
        yield from np["adjs"]

    def _src_clause(self, c: dict) -> Iterator[_W]:
        yield from self._src_np(c["subj"])
        yield c["verb"]
        if c["obj"]:
            yield from self._src_np(c["obj"])
        if c["adv"]:
            yield c["adv"]
        if c["pp"]:
            yield c["pp"][0]
            yield from self._src_np(c["pp"][1])
        if c["sub"]:
            yield c["sub"][0]
            yield from self._src_clause(c["sub"][1])

    def _tgt_clause(self, c: dict) -> Iterator[_W | str]:
        yield from self._tgt_np(c["subj"])
        if c["obj"]:
            yield from self._tgt_np(c["obj"])
            yield self.object_marker
        if c["pp"]:
            yield from self._tgt_np(c["pp"][1])
            yield c["pp"][0]
        if c["adv"]:
            yield c["adv"]
        yield c["verb"]
        if c["sub"]:
            yield c["sub"][0]
            yield from self._tgt_clause(c["sub"][1])

    def sentence(self, rng: random.Random) -> SyntheticPair:
        """Draw one sentence pair (any length) with its gold alignment."""
        clauses = [self._clause(rng, 0)]
        conj = None
        if rng.random() < 0.15:
            conj = self._pick(rng, "conj")
            clauses.append(self._clause(rng, 1))
        stop = _W(".")
        src_seq: list[_W] = list(self._src_clause(clauses[0]))
        tgt_seq: list[_W | str] = list(self._tgt_clause(clauses[0]))
        if conj is not None:
            src_seq += [conj, *self._src_clause(clauses[1])]
            tgt_seq += [conj, *self._tgt_clause(clauses[1])]
        src_seq.append(stop)
        tgt_seq.append(stop)
        for i, w in enumerate(src_seq):
            w.pos = i
        tgt: list[str] = []
        links: list[tuple[int, int]] = []
        for item in tgt_seq:
            if isinstance(item, str):  # a word inserted by a rule
                tgt.append(item)
                continue
            for part in self.dictionary[item.word]:
                links.append((item.pos, len(tgt)))
                tgt.append(part)
        return SyntheticPair([w.word for w in src_seq], tgt, sorted(links))


def generate(
    n: int, seed: int = 1, *, min_len: int = 4, max_len: int = 20
) -> tuple[SyntheticLanguage, list[SyntheticPair]]:
    """The language of ``seed`` and ``n`` distinct sentence pairs whose source has ``min_len`` ..
    ``max_len`` tokens (the target is usually a little longer: compounds, particles, markers)."""
    lang = SyntheticLanguage(seed)
    rng = random.Random(seed * 7919 + 17)
    seen: set[tuple[str, ...]] = set()
    pairs: list[SyntheticPair] = []
    attempts = 0
    while len(pairs) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise RuntimeError(f"could not draw {n} distinct sentences")
        p = lang.sentence(rng)
        key = tuple(p.src)
        if not (min_len <= len(p.src) <= max_len) or key in seen:
            continue
        seen.add(key)
        pairs.append(p)
    return lang, pairs
