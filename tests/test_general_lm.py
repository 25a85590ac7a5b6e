"""The general-English word LM: pocketsphinx's en-us 3-gram read from its wheel (asr.sphinx_lm), and
recipes/english/local/build_lm.py, which restricts, prunes and mixes it with the training text."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from asr.arpa import context_masses, parse_arpa, perplexity, predicted_mask, read_arpa_lm
from asr.lm import PIECE_LM_ORDER, build_arpa, check_piece_lm, piece_sentences
from asr.manifest import Utterance, write_manifest
from asr.text import Vocab

pocketsphinx = pytest.importorskip("pocketsphinx", reason="pocketsphinx (pip install 'asr[bench]') ships the LM")
EN_US = Path(pocketsphinx.__file__).parent / "model" / "en-us" / "en-us.lm.bin"
ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["MARK IS GOING TO SEE ELEPHANT", "WE CALL IT BEAR", "THREE TWO TWO SEVEN", "I LIKE TO EAT APPLES"]
GENERAL = ["PLEASE CALL HER MOTHER AND ASK HER TO BRING THESE THINGS", "THE WEATHER IS NICE TODAY"]


@pytest.fixture(scope="module")
def en_us():
    from asr.sphinx_lm import read_sphinx_lm

    if not EN_US.is_file():
        pytest.skip(f"{EN_US}: not in this pocketsphinx wheel")
    return read_sphinx_lm(EN_US)


def test_the_wheels_lm_is_read_whole_and_its_distributions_sum_to_one(en_us):
    assert en_us.counts() == [72547, 2051541, 1669625]  # what pocketsphinx itself reports for en-us.lm.bin
    uni = 10 ** en_us.logp[1][predicted_mask(en_us)]
    assert uni.sum() == pytest.approx(1.0, abs=1e-3)
    rows = np.random.default_rng(0).choice(len(en_us.grams[2]), 200, replace=False)
    # bigram and trigram values are 16-bit quantised in the file: sums within a few tenths of a percent
    np.testing.assert_allclose(context_masses(en_us, en_us.grams[2][rows]), 1.0, atol=0.02)
    ids = {w: i for i, w in enumerate(en_us.words)}
    assert en_us.logp[1][ids["the"]] > en_us.logp[1][ids["please"]] > en_us.logp[1][ids["elephant"]]


def test_build_lm_writes_a_general_lm_that_knows_sentences_the_training_text_lacks(tmp_path):
    (tmp_path / "train.txt").write_text("\n".join(TRAIN) + "\n", encoding="utf-8")
    chars = Vocab.from_texts(TRAIN + GENERAL + ["ABCDEFGHIJKLMNOPQRSTUVWXYZ'"])
    chars.save(tmp_path / "vocab.json")
    dev = tmp_path / "dev_general.jsonl"
    write_manifest(dev, [Utterance(f"u{i}", f"u{i}.wav", 1.0, t, "s") for i, t in enumerate(GENERAL)])
    out = tmp_path / "lm_general"
    done = subprocess.run(
        [sys.executable, str(ROOT / "recipes/english/local/build_lm.py"), "--train-text", str(tmp_path / "train.txt"),
         "--vocab", str(tmp_path / "vocab.json"), "--out-dir", str(out), "--vocab-size", "3000",
         "--max-ngrams", "30000", "--lambda", "0.5", "--dev", str(dev)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lm = read_arpa_lm(out / "lm.arpa")
    lexicon = {line.split()[0] for line in (out / "lexicon.txt").read_text(encoding="utf-8").splitlines()}
    assert {"PLEASE", "WEATHER", "ELEPHANT", "SEVEN"} <= lexicon  # general words and every training word
    assert 3000 <= len(lexicon) <= 3000 + len({w for t in TRAIN for w in t.split()})
    # the budget, plus the training text's n-grams and the few contexts that keep the model closed
    assert sum(lm.counts()[1:]) <= 1.05 * 30000 + sum(parse_arpa(build_arpa(TRAIN, order=3)).counts()[1:])
    notice = (out / "NOTICE").read_text(encoding="utf-8")
    assert "BSD 2-clause" in notice and "Carnegie Mellon University" in notice and "en-us.lm.bin" in notice
    info = json.loads((out / "lm_info.json").read_text(encoding="utf-8"))
    assert info["counts"] == lm.counts() and info["lambda"] == 0.5
    in_domain_only = parse_arpa(build_arpa(TRAIN, order=3))
    mixed_ppl = perplexity(lm, GENERAL)
    assert mixed_ppl.oovs == 0 and perplexity(in_domain_only, GENERAL).oovs > 0
    assert mixed_ppl.perplexity < 2000
    assert perplexity(lm, TRAIN).perplexity < perplexity(lm, GENERAL).perplexity  # the training text still counts


def test_build_lm_for_a_bpe_model_writes_a_piece_lm_of_sentences_drawn_from_the_general_lm(tmp_path):
    (tmp_path / "train.txt").write_text("\n".join(TRAIN) + "\n", encoding="utf-8")
    pieces = Vocab.bpe_from_texts(TRAIN * 5 + ["ABCDEFGHIJKLMNOPQRSTUVWXYZ'"], 40)
    pieces.save(tmp_path / "vocab.json")
    dev = tmp_path / "dev_general.jsonl"
    write_manifest(dev, [Utterance(f"u{i}", f"u{i}.wav", 1.0, t, "s") for i, t in enumerate(GENERAL)])
    out = tmp_path / "lm_general"
    done = subprocess.run(
        [sys.executable, str(ROOT / "recipes/english/local/build_lm.py"), "--train-text", str(tmp_path / "train.txt"),
         "--vocab", str(tmp_path / "vocab.json"), "--out-dir", str(out), "--vocab-size", "3000",
         "--max-ngrams", "30000", "--lambda", "0.5", "--sentences", "3000", "--dev", str(dev)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    text = (out / "lm.arpa").read_text(encoding="utf-8")
    check_piece_lm(text, pieces, out / "lm.arpa")  # over the model's pieces: the lexicon-free decoder reads it
    lm = parse_arpa(text)
    assert lm.order == PIECE_LM_ORDER and not (out / "lexicon.txt").exists()
    in_domain_only = parse_arpa(build_arpa(piece_sentences(TRAIN, pieces), order=PIECE_LM_ORDER))
    general = piece_sentences(GENERAL, pieces)
    # the general sentences' words were never in the training text: the drawn sentences teach their pieces
    assert perplexity(lm, general).perplexity < 0.7 * perplexity(in_domain_only, general).perplexity
    info = json.loads((out / "lm_info.json").read_text(encoding="utf-8"))
    assert info["units"] == "pieces" and info["sampled"] == {"order": PIECE_LM_ORDER, "sentences": 3000, "seed": 1}
    assert "3000 sentences drawn" in (out / "NOTICE").read_text(encoding="utf-8")


def test_build_lm_refuses_training_words_the_model_cannot_spell(tmp_path):
    (tmp_path / "train.txt").write_text("CAFÉ NOIR\n", encoding="utf-8")
    Vocab.from_texts(["ABCDEFGHIJKLMNOPQRSTUVWXYZ"]).save(tmp_path / "vocab.json")
    done = subprocess.run(
        [sys.executable, str(ROOT / "recipes/english/local/build_lm.py"), "--train-text", str(tmp_path / "train.txt"),
         "--vocab", str(tmp_path / "vocab.json"), "--out-dir", str(tmp_path / "lm")],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1 and "cannot spell" in done.stderr and "CAFÉ" in done.stderr
    assert not (tmp_path / "lm").exists()
