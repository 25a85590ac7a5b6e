"""Beam search (flashlight-text) with lexicon and word LM, tuning, and word timings."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
import torch

import asr.beam_search
from asr.beam_search import BeamSearchDecoder
from asr.decode import DecodeConfig, Hypothesis, greedy_search, make_decoder
from asr.word_timing import word_timings
from asr.errors import ASRError
from asr.lm import build_arpa
from asr.text import Vocab
from asr.tuning import tune_lm

from .conftest import decoded_text, frame_log_probs

VOCAB = Vocab.from_texts(["ABCTUX"])  # <blank>, ' ', A, B, C, T, U, X


def emissions(frames: list[dict[str, float]]) -> torch.Tensor:
    return frame_log_probs(VOCAB, frames)


def text_of(decode, log_probs: torch.Tensor) -> str:
    return decoded_text(decode, VOCAB, log_probs)


# C, then A (0.45) or U (0.55), then T: acoustically "CUT" by a little.
CAT_OR_CUT = emissions([{"C": 0.9}, {}, {"A": 0.45, "U": 0.55}, {}, {"T": 0.9}, {}])


def test_beam_without_lm_finds_the_acoustic_best_path():
    decode = BeamSearchDecoder(VOCAB, DecodeConfig(decoder="beam"))
    assert text_of(decode, CAT_OR_CUT) == "CUT"


def test_beam_width_one_equals_greedy_on_random_log_probs():
    torch.manual_seed(0)
    log_probs = torch.randn(4, 30, len(VOCAB)).mul(3).log_softmax(-1)
    lens = torch.tensor([30, 25, 12, 1])
    beam = BeamSearchDecoder(VOCAB, DecodeConfig(decoder="beam", beam_size=1))(log_probs, lens)
    greedy = greedy_search(log_probs, lens)
    assert [h.tokens for h in beam] == [h.tokens for h in greedy]


def test_word_lm_changes_the_winner():
    arpa = build_arpa(["CAT"] * 20 + ["CUT"], order=2)
    lexicon = ["CAT", "CUT"]
    plain = BeamSearchDecoder(VOCAB, DecodeConfig(decoder="beam"), lexicon=lexicon)
    with_lm = BeamSearchDecoder(VOCAB, DecodeConfig(decoder="beam", lm_weight=1.0), arpa, lexicon)
    assert text_of(plain, CAT_OR_CUT) == "CUT"
    assert text_of(with_lm, CAT_OR_CUT) == "CAT"


def test_lexicon_restricts_output_to_known_words():
    cxt = emissions([{"C": 0.9}, {}, {"X": 0.6, "A": 0.3}, {}, {"T": 0.9}, {}])
    assert text_of(BeamSearchDecoder(VOCAB, DecodeConfig(decoder="beam")), cxt) == "CXT"
    assert text_of(BeamSearchDecoder(VOCAB, DecodeConfig(decoder="beam"), lexicon=["CAT", "CUT"]), cxt) == "CAT"


def test_word_score_trades_words_for_fewer_longer_ones():
    # "A B" with a weak word boundary: one word "AB" or two words "A B" are both in the lexicon.
    a_b = emissions([{"A": 0.9}, {" ": 0.3}, {"B": 0.9}, {}])
    arpa = build_arpa(["A B", "AB"], order=2)
    lexicon = ["A", "B", "AB"]

    def decode(beta):
        config = DecodeConfig(decoder="beam", lm_weight=0.0, word_score=beta)
        return text_of(BeamSearchDecoder(VOCAB, config, arpa, lexicon), a_b)

    assert decode(3.0) == "A B"  # a bonus per word pays for the weak boundary
    assert decode(0.0) == "AB"  # without it the likelier path (blank over boundary) wins
    assert decode(-1.0) == "AB"


def test_an_lm_without_lexicon_is_rejected():
    with pytest.raises(ASRError, match=r"^a word LM needs a lexicon \(the words it can spell\)$"):
        BeamSearchDecoder(VOCAB, DecodeConfig(decoder="beam", lm_weight=1.0), build_arpa(["CAT"]), None)


# --- loading the LM: KenLM's native output ------------------------------------------------------


def test_a_broken_arpa_file_is_one_error_naming_the_file_and_the_problem():
    with pytest.raises(ASRError) as info:
        BeamSearchDecoder(VOCAB, DecodeConfig(decoder="beam"), "garbage\n", ["CAT"], lm_source="lm.arpa")
    message = str(info.value)
    assert message.startswith("lm.arpa: cannot load the beam-search LM or lexicon (")
    assert 'first non-empty line was "garbage"' in message  # KenLM's reason, without its C++ source line
    assert "\n" not in message and "read_arpa.cc" not in message and "Loading the LM" not in message


def test_native_output_of_a_failed_load_is_in_the_error(monkeypatch):
    def failing_decoder(*args, **kwargs):
        os.write(2, b"Reading lm.arpa\nkenlm: 3-gram section is empty\n")  # as C++ code writes it
        raise RuntimeError("lm/read_arpa.cc:99 in ReadNGram threw FormatLoadException.\nbad n-gram line")

    monkeypatch.setattr(asr.beam_search, "_flashlight_decoder", failing_decoder)
    with pytest.raises(ASRError, match=r"^lm\.arpa: cannot load the beam-search LM or lexicon "
                                       r"\(bad n-gram line; kenlm: 3-gram section is empty\)$"):
        BeamSearchDecoder(VOCAB, DecodeConfig(decoder="beam"), build_arpa(["CAT"]), ["CAT"], lm_source="lm.arpa")


LOAD_WITH_COMPANY = """
import os, threading
import asr.beam_search as decoder
from asr.beam_search import BeamSearchDecoder
from asr.decode import DecodeConfig
from asr.lm import build_arpa
from asr.text import Vocab

real_decoder = decoder._flashlight_decoder

def decoder_with_company(*args, **kwargs):  # while the LM loads: another thread prints, C code writes
    thread = threading.Thread(target=print, args=("printed by another thread",))
    thread.start()
    thread.join()
    os.write(2, b"native chatter\\n")
    return real_decoder(*args, **kwargs)

decoder._flashlight_decoder = decoder_with_company
BeamSearchDecoder(Vocab.from_texts(["CAT"]), DecodeConfig(decoder="beam"), build_arpa(["CAT"]), ["CAT"])
print("loaded")
"""


def test_loading_an_lm_keeps_other_threads_prints_and_drops_only_native_output():
    # In a fresh process: there sys.stdout writes to file descriptor 1, as in a user's run.
    result = subprocess.run([sys.executable, "-c", LOAD_WITH_COMPANY], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "printed by another thread\nloaded\n"
    assert "native chatter" not in result.stderr and "Loading the LM" not in result.stderr  # captured, dropped


def test_concurrent_lm_loads_leave_stdout_and_stderr_where_they_were():
    before = [os.fstat(fd) for fd in (1, 2)]
    arpa, errors = build_arpa(["CAT"] * 3 + ["CUT"], order=2), []

    def load():
        try:
            BeamSearchDecoder(VOCAB, DecodeConfig(decoder="beam", lm_weight=1.0), arpa, ["CAT", "CUT"])
        except Exception as err:  # collected for the assertion below
            errors.append(err)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    after = [os.fstat(fd) for fd in (1, 2)]
    assert [(s.st_dev, s.st_ino) for s in after] == [(s.st_dev, s.st_ino) for s in before]


def test_make_decoder_greedy_is_greedy_search():
    assert make_decoder(VOCAB, DecodeConfig()) is greedy_search


def test_tune_lm_prefers_an_lm_weight_that_fixes_the_error():
    arpa = build_arpa(["CAT"] * 20 + ["CUT"], order=2)
    results = tune_lm([CAT_OR_CUT[0]], ["CAT"], VOCAB, arpa, ["CAT", "CUT"], lm_weights=[0.0, 1.0], word_scores=[0.0])
    assert len(results) == 2
    best_config, best_report = results[0]
    assert best_config.lm_weight == 1.0 and best_report.wer == 0.0
    assert results[1][0].lm_weight == 0.0 and results[1][1].wer == 1.0


def test_word_timings_from_greedy_frames():
    # frames: C . A . T . _ . B     (0.03 s per frame); ' ' at frame 6 separates two words
    log_probs = emissions([{"C": 0.9}, {}, {"A": 0.9}, {}, {"T": 0.9}, {}, {" ": 0.9}, {}, {"B": 0.8}])
    (hyp,) = greedy_search(log_probs, torch.tensor([9]))
    words = word_timings(hyp, log_probs[0], VOCAB, frame_seconds=0.03, duration=0.26)
    assert [w.word for w in words] == ["CAT", "B"]
    assert words[0].start == pytest.approx(0.0) and words[0].end == pytest.approx(0.15)
    assert words[1].start == pytest.approx(0.24) and words[1].end == pytest.approx(0.26)  # clipped to duration
    assert words[0].confidence == pytest.approx(0.9, abs=1e-3)
    assert words[1].confidence == pytest.approx(0.8, abs=1e-3)


def test_word_timings_are_monotonic_and_within_duration_for_beam_output():
    torch.manual_seed(1)
    log_probs = torch.randn(1, 80, len(VOCAB)).mul(4).log_softmax(-1)
    (hyp,) = BeamSearchDecoder(VOCAB, DecodeConfig(decoder="beam"))(log_probs, torch.tensor([80]))
    words = word_timings(hyp, log_probs[0], VOCAB, frame_seconds=0.03, duration=2.4)
    assert words, "random emissions should produce some words"
    for word in words:
        assert 0 <= word.start < word.end <= 2.4
        assert 0 <= word.confidence <= 1
    assert all(a.end <= b.start for a, b in zip(words, words[1:]))


def test_empty_hypothesis_has_no_words():
    assert word_timings(Hypothesis([], []), torch.zeros(3, len(VOCAB)), VOCAB, 0.03) == []
