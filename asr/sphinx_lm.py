"""pocketsphinx's binary n-gram LM -> `asr.arpa.BackoffLM` (for building LMs; inference never imports this).

pocketsphinx 5 reads ARPA, the old sphinxbase DMP ("Darpa Trigram LM") and its own binary
format, but writes only ARPA (which crashes on its 3-gram: `NGramModel.write(path, 'arpa')`
segfaults part-way through the bigrams) and that binary format, "Trie Language Model" (what
`write(..., 'dmp')` and `write('x.bin')` produce: pocketsphinx 5 dropped the DMP writer, and
its `en-us.lm.bin` is already such a file). `export_sphinx_lm` has pocketsphinx write any model
it can read in that format (in a subprocess, so a crash cannot take the caller with it), and
`read_sphinx_lm` parses it. The layout, as pocketsphinx's src/lm/ngram_model_trie.c,
lm_trie.c, lm_trie_quant.c and bitarr.c write it (little-endian):

    "Trie Language Model"  (19 bytes, no NUL)   uint8 order   uint32 count[order]
    int32 1, then the quantiser's tables (orders > 1): for each middle order a 2^16-entry float32
        probability table and a 2^16-entry back-off table, then the highest order's probability table
    unigrams: (count[0] + 1) x {float32 prob, float32 backoff, uint32 next}  (the last: a sentinel)
    the bit-packed trie, one array per order 2..N; entry e starts at bit e * total_bits:
        middle orders:  word (bits(count[0])), back-off code (16), probability code (16),
                        next (bits(count[n]))
        highest order:  word (bits(count[0])), probability code (16)
        each array: ((entries + 1) * total_bits + 7) // 8 + 8 bytes (a sentinel entry, 8 spare bytes)
    int32 size, then the words, each NUL-terminated, in unigram order

The trie is reversed, as KenLM's is: unigram u's `next` .. the next unigram's `next` are the
bigram entries `v u` (v the entry's word), and a bigram entry's `next` range holds the trigram
entries `t v u`. Every entry carries that forward n-gram's probability and (middle orders) its
back-off weight. Values are logs in base 1.0001 (pocketsphinx's default `-logbase`), stored as
floats; p(<s>) is -99 (log10). Bigram and trigram values are quantised to 2^16 levels; the
unigrams are exact. The trie keeps every n-gram's suffix (adding "blank" entries with the
back-off probability where the source model had none), not always its context; the model read
here is closed with `asr.arpa.close_ngrams`.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from asr.arpa import BackoffLM, close_ngrams
from asr.errors import ASRError

TRIE_MAGIC = b"Trie Language Model"
SPHINX_LOG_BASE = 1.0001  # pocketsphinx's default -logbase: the unit of every stored value
LOG10_PER_UNIT = math.log10(SPHINX_LOG_BASE)
QUANT_BITS = 16  # lm_trie_quant.c: prob_bits = bo_bits = 16
QUANT_LEVELS = 1 << QUANT_BITS
UNIGRAM = np.dtype([("prob", "<f4"), ("bo", "<f4"), ("next", "<u4")])
EXPORT_TIMEOUT_S = 600

_EXPORT = """
import sys
import pocketsphinx
model = pocketsphinx.NGramModel(pocketsphinx.Config(), pocketsphinx.LogMath(), sys.argv[1])
model.write(sys.argv[2])  # a name ending in .bin: NGRAM_BIN, the trie format
"""


def export_sphinx_lm(source: str | os.PathLike, target: str | os.PathLike, timeout: float = EXPORT_TIMEOUT_S) -> None:
    """Have pocketsphinx read the LM at `source` (ARPA, DMP or binary) and write it to `target`
    (a name ending in `.bin`) in its trie format, in a subprocess; ASRError if it fails."""
    target = Path(target)
    if target.suffix.lower() != ".bin":
        raise ASRError(f"{target}: name the pocketsphinx binary LM *.bin (the name picks the format)")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        result = subprocess.run([sys.executable, "-c", _EXPORT, str(source), str(target)],
                                capture_output=True, encoding="utf-8", timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ASRError(f"{source}: pocketsphinx did not finish writing {target} in {timeout:.0f} s") from None
    if result.returncode != 0 or not target.is_file():
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise ASRError(f"{source}: pocketsphinx could not convert it to {target} "
                       f"(exit status {result.returncode}): {' | '.join(tail)}")


def _required_bits(max_value: int) -> int:
    """bitarr.c's bitarr_required_bits: bits to store 0..max_value."""
    return int(max_value).bit_length()


def _read_bits(mem: np.ndarray, bit_offsets: np.ndarray, bits: int) -> np.ndarray:
    """Fields of `bits` (<= 57) bits at these bit offsets of a little-endian bit array (bitarr.c)."""
    start = bit_offsets >> 3
    window = mem[start[:, None] + np.arange(8)].view("<u8").reshape(-1)
    return ((window >> (bit_offsets & 7).astype(np.uint64)) & np.uint64((1 << bits) - 1)).astype(np.int64)


class _Reader:
    def __init__(self, data: bytes, path: str | os.PathLike) -> None:
        self.data, self.path, self.pos = data, path, 0

    def take(self, size: int) -> memoryview:
        if self.pos + size > len(self.data):
            raise ASRError(f"{self.path}: truncated pocketsphinx binary LM (needs {self.pos + size} bytes, "
                           f"has {len(self.data)})")
        view = memoryview(self.data)[self.pos:self.pos + size]
        self.pos += size
        return view

    def array(self, dtype, count: int) -> np.ndarray:
        dtype = np.dtype(dtype)
        return np.frombuffer(self.take(dtype.itemsize * count), dtype=dtype)


def read_sphinx_lm(path: str | os.PathLike) -> BackoffLM:
    """The pocketsphinx binary (trie) LM at `path` as a closed `BackoffLM` with log10 values
    (the layout is in the module docstring). Checks that the arrays' sizes, pointers and word
    list agree with the header's counts and that nothing is left over."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise ASRError(f"{path}: cannot read ({err})") from None
    r = _Reader(data, path)
    if bytes(r.take(len(TRIE_MAGIC))) != TRIE_MAGIC:
        raise ASRError(f"{path}: not a pocketsphinx binary LM (no {TRIE_MAGIC.decode()!r} header); "
                       "convert it with export_sphinx_lm first")
    order = int(r.array("u1", 1)[0])
    counts = [int(c) for c in r.array("<u4", order)]
    if order < 1 or counts[0] < 1:
        raise ASRError(f"{path}: bad header (order {order}, counts {counts})")
    prob_tables: list[np.ndarray] = []
    bo_tables: list[np.ndarray] = []
    if order > 1:
        r.array("<i4", 1)  # was the quantisation type; always 1
        for _ in range(order - 2):
            prob_tables.append(r.array("<f4", QUANT_LEVELS).astype(np.float64))
            bo_tables.append(r.array("<f4", QUANT_LEVELS).astype(np.float64))
        prob_tables.append(r.array("<f4", QUANT_LEVELS).astype(np.float64))
    unigrams = r.array(UNIGRAM, counts[0] + 1)
    word_bits = _required_bits(counts[0])
    grams = [None, np.arange(counts[0])[:, None]]
    logp = [None, unigrams["prob"][:-1].astype(np.float64) * LOG10_PER_UNIT]
    logbo = [None, unigrams["bo"][:-1].astype(np.float64) * LOG10_PER_UNIT]
    # owner[e]: the row (among the (n-1)-grams read so far) whose `next` range holds entry e
    nexts = unigrams["next"].astype(np.int64)
    for n in range(2, order + 1):
        # The header's count can exceed the entries the trie holds (lm_trie_fix_counts
        # over-estimates the "blank" entries it will add; the array is sized for the header's
        # count): the lower order's last pointer is the true number.
        entries = int(nexts[-1])
        if nexts[0] != 0 or entries > counts[n - 1] or (np.diff(nexts) < 0).any():
            raise ASRError(f"{path}: the {n - 1}-grams' pointers do not fit the {counts[n - 1]} {n}-grams")
        middle = n < order
        next_bits = _required_bits(counts[n]) if middle else 0
        total_bits = word_bits + 2 * QUANT_BITS + next_bits if middle else word_bits + QUANT_BITS
        mem = r.array("u1", ((counts[n - 1] + 1) * total_bits + 7) // 8 + 8)
        at = np.arange(entries + (1 if middle else 0), dtype=np.int64) * total_bits
        word = _read_bits(mem, at[:entries], word_bits)
        if entries and word.max() >= counts[0]:
            raise ASRError(f"{path}: a {n}-gram entry names word {word.max()} of {counts[0]}")
        owner = np.repeat(np.arange(len(nexts) - 1), np.diff(nexts))
        # entry e of order n is the n-gram (word[e], *owner's n-1 words): the trie is reversed
        grams.append(np.concatenate([word[:, None], grams[n - 1][owner]], axis=1))
        if middle:
            bo_code = _read_bits(mem, at[:entries] + word_bits, QUANT_BITS)
            prob_code = _read_bits(mem, at[:entries] + word_bits + QUANT_BITS, QUANT_BITS)
            logbo.append(bo_tables[n - 2][bo_code] * LOG10_PER_UNIT)
            nexts = _read_bits(mem, at + word_bits + 2 * QUANT_BITS, next_bits)
        else:
            prob_code = _read_bits(mem, at + word_bits, QUANT_BITS)
            logbo.append(np.zeros(entries))
        logp.append(prob_tables[n - 2][prob_code] * LOG10_PER_UNIT)
    size = int(r.array("<i4", 1)[0])
    names = bytes(r.take(size)).split(b"\0")
    if names[-1] != b"" or len(names) - 1 != counts[0]:
        raise ASRError(f"{path}: the word list holds {len(names) - 1} words, the header says {counts[0]}")
    if r.pos != len(data):
        raise ASRError(f"{path}: {len(data) - r.pos} bytes left over after the word list")
    try:
        words = [name.decode("utf-8") for name in names[:-1]]
    except UnicodeDecodeError as err:
        raise ASRError(f"{path}: a word is not UTF-8 ({err})") from None
    return close_ngrams(BackoffLM.from_arrays(words, grams, logp, logbo))


def convert_sphinx_lm(source: str | os.PathLike, work_dir: str | os.PathLike) -> BackoffLM:
    """Any LM pocketsphinx reads, as a `BackoffLM`: exported to `work_dir`/sphinx_lm.bin
    (`export_sphinx_lm`), then parsed (`read_sphinx_lm`)."""
    target = Path(work_dir) / "sphinx_lm.bin"
    export_sphinx_lm(source, target)
    return read_sphinx_lm(target)
