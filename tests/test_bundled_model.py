"""The AN4 model shipped inside the package, and the example in examples/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from asr.checkpoint import load_model
from asr.cli import BUNDLED_CHECKPOINT, BUNDLED_MODEL
from asr.runtime import load_exported

from .conftest import REPO

EXAMPLE = REPO / "examples" / "an4_test_example.wav"
ASR = str(Path(sys.executable).with_name("asr"))


def test_bundled_model_is_small_and_carries_its_lm():
    assert BUNDLED_CHECKPOINT.stat().st_size <= 20 * 1024 * 1024
    assert sum(p.stat().st_size for p in BUNDLED_MODEL.iterdir()) <= 20 * 1024 * 1024
    loaded = load_model(BUNDLED_CHECKPOINT)
    assert loaded.model.num_parameters() <= 10_000_000
    assert loaded.decoding.decoder == "beam" and loaded.lm_arpa.startswith("\\data\\") and loaded.lexicon
    exported = load_exported(BUNDLED_MODEL)  # the form `asr transcribe` runs: the same decoding, LM and lexicon
    assert (exported.decoding, exported.lm_arpa, exported.lexicon) == (loaded.decoding, loaded.lm_arpa, loaded.lexicon)
    for name in ("MODEL_CARD.md", "LICENSE-AN4"):
        assert (BUNDLED_CHECKPOINT.parent / name).is_file()


def test_transcribe_with_no_model_uses_the_bundled_one_and_gets_the_example_right():
    expected = EXAMPLE.with_suffix(".txt").read_text().strip()
    result = subprocess.run([ASR, "transcribe", str(EXAMPLE)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{EXAMPLE}\t{expected}\n"
    greedy = subprocess.run([ASR, "transcribe", "--decoder", "greedy", str(EXAMPLE)], capture_output=True, text=True)
    assert greedy.returncode == 0 and greedy.stdout.split("\t")[1].strip() == expected
