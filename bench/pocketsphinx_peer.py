"""CMU pocketsphinx 5 as the peer system of the benchmarks (bench/robustness.py, bench/transcribe_rtf.py):
its decoder, one file at a time or across worker processes, and its output in the references' conventions.
Needs the bench extra (pip install -e '.[bench]')."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from asr.audio import SAMPLE_RATE, load_audio

_FILLER = re.compile(r"^(<.*>|\[.*\]|\+\+.*\+\+)$")  # <s> </s> <sil>, [NOISE], ++BREATH++
_VARIANT = re.compile(r"\(\d+\)$")  # TWO(2): an alternative pronunciation of TWO


def normalise_pocketsphinx(text: str) -> str:
    """pocketsphinx output in the references' conventions: upper case, no sentence marks,
    fillers or pronunciation-variant suffixes."""
    from asr.text import normalise_text

    words = [_VARIANT.sub("", w) for w in text.split() if not _FILLER.match(w)]
    return normalise_text(" ".join(words))


class Pocketsphinx:
    """CMU pocketsphinx 5: its default en-us acoustic model, with AN4's unigram LM and dictionary
    (an4_dir given) or its own general US-English 3-gram and CMU dictionary (an4_dir None).

    fwdflat (the second, flat-lexicon search pass) is off: 1.6x faster, the same WER on AN4 test.
    Every file starts from a fresh feature front end (reinit_feat: live CMN would otherwise carry
    over from the file before), so a file's result is that of a new decoder, in any order or process.
    """

    def __init__(self, an4_dir: Path | None) -> None:
        from pocketsphinx import Config, Decoder, get_model_path

        models = Path(get_model_path()) / "en-us"
        if an4_dir is None:
            lm, dictionary, self.label = models / "en-us.lm.bin", models / "cmudict-en-us.dict", "pocketsphinx en-us"
        else:
            lm, dictionary, self.label = an4_dir / "etc" / "an4.lm", an4_dir / "etc" / "an4.dic", POCKETSPHINX_AN4
        config = Config(hmm=str(models / "en-us"), lm=str(lm), dict=str(dictionary), logfn=os.devnull, fwdflat=False)
        self.decoder = Decoder(config)

    def transcribe(self, path: str) -> str:
        """One file (any rate: read at 16 kHz) -> normalised text."""
        samples = load_audio(path, SAMPLE_RATE)
        pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)
        self.decoder.reinit_feat()
        self.decoder.start_utt()
        self.decoder.process_raw(pcm.tobytes(), full_utt=True)
        self.decoder.end_utt()
        hypothesis = self.decoder.hyp()
        return normalise_pocketsphinx(hypothesis.hypstr) if hypothesis else ""


POCKETSPHINX_AN4 = "pocketsphinx"  # the label of the AN4-LM row (earlier result files use it)

_worker_sphinx: Pocketsphinx | None = None  # one decoder per worker process (sphinx_transcriber)


def _start_sphinx_worker(an4_dir: Path | None) -> None:
    global _worker_sphinx
    _worker_sphinx = Pocketsphinx(an4_dir)


def _sphinx_worker_transcribe(path: str) -> str:
    return _worker_sphinx.transcribe(path)


def sphinx_transcriber(an4_dir: Path | None, jobs: int) -> tuple[str, Callable[[list[str]], list[str]]]:
    """(label, paths -> hypotheses) for pocketsphinx; jobs > 1 decodes in that many worker processes
    (pocketsphinx uses one core), each with its own decoder, in the order given."""
    sphinx = Pocketsphinx(an4_dir)  # here too: an ImportError surfaces before any worker starts
    if jobs <= 1:
        return sphinx.label, lambda paths: [sphinx.transcribe(p) for p in paths]
    import multiprocessing

    pool = multiprocessing.get_context("spawn").Pool(jobs, _start_sphinx_worker, (an4_dir,))
    return sphinx.label, lambda paths: pool.map(_sphinx_worker_transcribe, paths, chunksize=4)
