"""Each bundled model scores on AN4 test what its model card says it does.

The expected WERs are read from asr/pretrained/<model>/MODEL_CARD.md, so this test follows the
card when the model (and its card) change. Decodes the 130 test utterances twice: greedy, and
the model's own decoding (beam search + its LM: a word LSTM since 2026-11-30), with the PyTorch checkpoint and with
its exported form (what `asr transcribe` runs), whose transcripts must be the same.
Skipped only when AN4 is absent.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from asr.checkpoint import load_model
from asr.bundled import BUNDLED
from asr.manifest import read_manifest
from asr.decode import DecodeConfig, make_decoder
from asr.metrics import error_rates
from asr.runtime import load_exported
from asr.transcribe import Transcriber
from asr.tuning import decode_all

from .test_recipe import PREPARE

TOLERANCE = 0.1  # WER percentage points


def card_test_wers(card: str, where: str = "the model card") -> dict[str, float]:
    """{'greedy': WER %, 'beam_lm': WER %} from the card's table row for the test set (where: its file)."""
    (row,) = [line for line in card.splitlines() if line.startswith("| test (")]
    greedy = re.search(r"greedy WER ([\d.]+) %", row)
    beam_lm = re.search(r"beam \+ [^|;]*?(?:LM|LSTM) WER ([\d.]+) %", row)
    assert greedy and beam_lm, f"{where}: no greedy and beam + LM WERs in the test row: {row}"
    return {"greedy": float(greedy.group(1)), "beam_lm": float(beam_lm.group(1))}


def test_the_card_row_is_parsed():
    row = "| test (an4test_clstk, 130 utterances) | greedy WER 8.80 %, CER 3.78 %; beam + 3-gram LM WER 7.89 % (61 errors) |"
    assert card_test_wers(row) == {"greedy": 8.80, "beam_lm": 7.89}
    row = "| test (an4test_clstk) | greedy WER 13.58 %, CER 5.85 %; beam + word LSTM WER 9.70 % (75 errors); with the 3-gram 10.74 % |"
    assert card_test_wers(row) == {"greedy": 13.58, "beam_lm": 9.70}


@pytest.mark.an4
@pytest.mark.parametrize("name", [name for name, model in BUNDLED.items() if model.available])
def test_bundled_model_scores_the_wers_its_card_states_on_an4_test(name, an4_dir, tmp_path):
    prepared = subprocess.run([sys.executable, str(PREPARE), "--data-dir", str(an4_dir), "--out-dir", str(tmp_path)],
                              capture_output=True, text=True, timeout=300)
    assert prepared.returncode == 0, prepared.stderr
    test = read_manifest(tmp_path / "test.jsonl")
    assert len(test) == 130
    references = [u.text for u in test]

    bundled = BUNDLED[name]
    loaded = load_model(bundled.checkpoint)
    assert loaded.decoding.decoder == "beam" and (loaded.lm_arpa, loaded.rnnlm) != (None, None)  # beam + an LM
    card = bundled.folder / "MODEL_CARD.md"
    expected = card_test_wers(card.read_text(encoding="utf-8"), str(card))
    exported = load_exported(bundled.exported)
    texts = {}
    for backend, transcriber in (("pytorch", Transcriber(loaded, batch_size=32)),
                                 ("onnx", Transcriber(exported, batch_size=32))):
        log_probs = transcriber.log_probs([u.audio for u in test])
        texts[backend] = {
            "greedy": decode_all(make_decoder(loaded.vocab, DecodeConfig()), log_probs, loaded.vocab),
            "beam_lm": decode_all(transcriber.backend.decoder(), log_probs, loaded.vocab),
        }
        for decoding, wer in expected.items():
            measured = error_rates(references, texts[backend][decoding]).wer * 100
            assert measured == pytest.approx(wer, abs=TOLERANCE), (name, backend, decoding, measured)
    assert texts["onnx"] == texts["pytorch"]
