"""Data: reading and checking text, tokenising, BPE, vocabularies, corpus recipes and batching.

Text flows ``recipes.prepare`` -> a prepared folder (``build``) -> ``load_prepared`` -> ``TokenBatcher``
-> ``collate`` -> :class:`Batch` tensors for the model.
"""

from varattn.data.batching import Batch, TokenBatcher, collate
from varattn.data.build import BuildOptions, TextSplit, build_prepared
from varattn.data.download import DownloadError, fetch
from varattn.data.pharaoh import format_links, parse_links, read_alignments
from varattn.data.prepared import ParallelSplit, PreparedData, load_prepared
from varattn.data.recipes import SOURCES, prepare
from varattn.data.synthetic import SyntheticLanguage, SyntheticPair, generate
from varattn.data.textio import read_lines, read_parallel, sha256_file, write_lines
from varattn.data.tokenize import Pipeline, learn_bpe, load_bpe, moses_detokenize, moses_tokenize, remove_bpe
from varattn.data.vocab import BOS, EOS, PAD, SPECIALS, UNK, Vocabulary

__all__ = [
    "Batch",
    "TokenBatcher",
    "collate",
    "BuildOptions",
    "TextSplit",
    "build_prepared",
    "DownloadError",
    "fetch",
    "format_links",
    "parse_links",
    "read_alignments",
    "ParallelSplit",
    "PreparedData",
    "load_prepared",
    "SOURCES",
    "prepare",
    "SyntheticLanguage",
    "SyntheticPair",
    "generate",
    "read_lines",
    "read_parallel",
    "sha256_file",
    "write_lines",
    "Pipeline",
    "learn_bpe",
    "load_bpe",
    "moses_detokenize",
    "moses_tokenize",
    "remove_bpe",
    "PAD",
    "UNK",
    "BOS",
    "EOS",
    "SPECIALS",
    "Vocabulary",
]
