"""The degraded copies of asr.degrade (bench/robustness.py's conditions) on generated tones (no AN4 needed): each condition's copy
is the same file byte for byte on every run, and changes the signal as its name says."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from asr.audio import load_audio
from asr import degrade
from asr.decode import DecodeConfig
from asr.manifest import Utterance

from .conftest import bench_module, write_tone

RATE = 16_000


@pytest.fixture(scope="module")
def bench():
    with bench_module("robustness") as module:
        yield module


@pytest.fixture(scope="module")
def peer(bench):
    """bench/pocketsphinx_peer.py under its own name (its worker processes import it by that name)."""
    import importlib

    return importlib.import_module("pocketsphinx_peer")


@pytest.fixture(scope="module")
def tones(tmp_path_factory) -> dict[str, Path]:
    """An 'utterance' (a tone with 0.3 s of near-silence either side) and six 'babble talkers'."""
    folder = tmp_path_factory.mktemp("tones")
    t = np.arange(RATE) / RATE
    rng = np.random.default_rng(0)
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    quiet = 0.0005 * rng.standard_normal(int(0.3 * RATE))
    utterance = np.concatenate([quiet, tone + 0.0005 * rng.standard_normal(RATE), quiet]).astype(np.float32)
    sf.write(folder / "utt.wav", utterance, RATE, subtype="PCM_16")
    paths = {"utt": folder / "utt.wav"}
    for n in range(6):
        paths[f"talker{n}"] = folder / f"talker{n}.wav"
        write_tone(paths[f"talker{n}"], seconds=0.7 + 0.1 * n, freq=200.0 + 90 * n)
    return paths


def make_degrader(bench, tones):
    noise = (0.1 * np.random.default_rng(1).standard_normal(3 * RATE)).astype(np.float32)
    talkers = [str(p) for name, p in tones.items() if name.startswith("talker")]
    return degrade.Degrader(talkers, [noise], rooms_per_rt60=1)


FAST_CONDITIONS = [
    "gain_-30dB", "peak_0.9", "white_20dB", "white_10dB", "white_5dB", "pink_20dB", "pink_10dB", "pink_5dB",
    "babble_10dB", "reverb_rt60_0.4", "telephone_mulaw", "trimmed", "real_noise_10dB",
]  # reverb_rt60_0.8 is the same code with a slower room (seconds to simulate)


def test_the_conditions_are_the_fifteen_named(bench, tones):
    assert len(degrade.CONDITIONS) == 15 and set(FAST_CONDITIONS) | {"clean", "reverb_rt60_0.8"} == set(degrade.CONDITIONS)
    degrader = make_degrader(bench, tones)
    assert set(degrader.recipes) | {"clean"} == set(degrade.CONDITIONS)


def test_each_condition_writes_the_same_bytes_every_time(bench, tones, tmp_path):
    x = load_audio(tones["utt"], RATE)
    for condition in FAST_CONDITIONS:
        files = []
        for attempt in range(2):  # a fresh Degrader each time: nothing carried over
            path = tmp_path / f"{condition}_{attempt}.wav"
            degrade.write_degraded(path, make_degrader(bench, tones).degrade(condition, "utt-1", x))
            files.append(path.read_bytes())
        assert files[0] == files[1], condition
    a, b = (make_degrader(bench, tones).degrade("white_10dB", utt, x).samples for utt in ("utt-1", "utt-2"))
    assert not np.array_equal(a, b)  # a different utterance id draws different noise


def written(bench, tones, tmp_path, condition) -> tuple[np.ndarray, np.ndarray, sf._SoundFileInfo]:
    """(clean samples, the condition's file read back at its own rate, the file's info)."""
    x = load_audio(tones["utt"], RATE)
    path = tmp_path / f"{condition}.wav"
    degrade.write_degraded(path, make_degrader(bench, tones).degrade(condition, "utt-1", x))
    y, _ = sf.read(path, dtype="float32")
    return x, y, sf.info(str(path))


def db(power: float) -> float:
    return 10 * np.log10(power)


def power(x: np.ndarray) -> float:
    return float(np.mean(x.astype(np.float64) ** 2))


def test_gain_condition_is_30_db_quieter_in_a_16_bit_file(bench, tones, tmp_path):
    x, y, info = written(bench, tones, tmp_path, "gain_-30dB")
    assert info.subtype == "PCM_16" and info.samplerate == RATE and len(y) == len(x)
    assert db(power(y)) - db(power(x)) == pytest.approx(-30.0, abs=0.1)


def test_peak_condition_peaks_at_0_9(bench, tones, tmp_path):
    _, y, _ = written(bench, tones, tmp_path, "peak_0.9")
    assert np.max(np.abs(y)) == pytest.approx(0.9, abs=1e-3)


@pytest.mark.parametrize("condition, snr_db", [
    ("white_20dB", 20), ("white_10dB", 10), ("white_5dB", 5), ("pink_20dB", 20), ("pink_10dB", 10), ("pink_5dB", 5),
    ("babble_10dB", 10), ("real_noise_10dB", 10),
])
def test_noise_conditions_are_at_their_snr(bench, tones, tmp_path, condition, snr_db):
    x, y, _ = written(bench, tones, tmp_path, condition)
    assert np.max(np.abs(y)) < 1.0  # no peak limiting at these levels: y - x is the noise
    assert db(power(x)) - db(power(y - x)) == pytest.approx(snr_db, abs=0.5)


def test_pink_noise_condition_is_pink(bench, tones, tmp_path):
    x, y, _ = written(bench, tones, tmp_path, "pink_5dB")
    noise = np.fft.rfft(y - x)
    freqs = np.fft.rfftfreq(len(x), 1 / RATE)
    low, high = (np.mean(np.abs(noise[(freqs > f) & (freqs < 2 * f)]) ** 2) for f in (250, 2000))
    assert db(low) - db(high) == pytest.approx(3.01 * 3, abs=2.0)  # three octaves at -3 dB each


def test_reverb_condition_keeps_a_decaying_tail(bench, tones, tmp_path):
    x, y, _ = written(bench, tones, tmp_path, "reverb_rt60_0.4")
    assert len(y) > len(x) + 0.2 * RATE  # the tail of a 0.4 s room
    assert np.max(np.abs(y)) == pytest.approx(np.max(np.abs(x)), abs=1e-3)
    tone_end = int(1.3 * RATE)  # the tone stops 0.3 s before the end of x
    assert power(y[tone_end + 800:tone_end + 1600]) > 100 * power(x[tone_end + 800:tone_end + 1600])  # reverberation
    assert power(y[tone_end:tone_end + 1600]) > power(y[tone_end + 1600:tone_end + 3200]) > power(y[-1600:])  # decaying


def test_telephone_condition_is_an_8_khz_mu_law_file(bench, tones, tmp_path):
    x, y, info = written(bench, tones, tmp_path, "telephone_mulaw")
    assert (info.samplerate, info.subtype, info.format) == (8000, "ULAW", "WAV")
    assert len(y) == len(x) // 2
    assert db(power(y)) == pytest.approx(db(power(x)), abs=1.0)  # 440 Hz is inside the band


def test_trimmed_condition_cuts_the_quiet_ends(bench, tones, tmp_path):
    x, y, _ = written(bench, tones, tmp_path, "trimmed")
    assert len(x) - 0.65 * RATE < len(y) < len(x) - 0.45 * RATE  # 0.6 s of near-silence, to within frames
    assert power(y) > 1.3 * power(x)  # what is left is the tone


def test_cached_copies_are_reused_when_complete(bench, tones, tmp_path):
    utterances = [Utterance("utt-1", str(tones["utt"]), 1.6, "A B", "spk")]
    degrader = make_degrader(bench, tones)
    first = degrade.cached_condition(tmp_path, "test", "white_10dB", utterances, degrader)
    again = degrade.cached_condition(tmp_path, "test", "white_10dB", utterances, degrader)
    assert first.made and not again.made and again.utterances == first.utterances
    assert Path(first.utterances[0].audio).parent == tmp_path / "test" / "white_10dB"
    (tmp_path / "test" / "white_10dB.done").write_text('{"fingerprint": {"version": 0}}')  # an older version
    assert degrade.cached_condition(tmp_path, "test", "white_10dB", utterances, degrader).made


def test_pocketsphinx_output_is_normalised_to_the_references(peer):
    assert peer.normalise_pocketsphinx("<s> a(2) <sil> [NOISE] TWO(2) ++BREATH++ go </s>") == "A TWO GO"


@pytest.mark.parametrize("lm_arpa, lm_weight, rnnlm, rnnlm_weight, label", [
    (None, 0.0, None, 0.0, "beam"),
    ("arpa", 1.0, None, 0.0, "beam+LM"),
    ("arpa", 0.0, None, 0.0, "beam"),  # tuned to weight 0: the n-gram plays no part
    (None, 0.0, "lm", 0.6, "beam+RNNLM"),
    ("arpa", 1.0, "lm", 0.4, "beam+LM+RNNLM"),
])
def test_a_decoding_is_labelled_by_the_lms_it_uses(bench, lm_arpa, lm_weight, rnnlm, rnnlm_weight, label):
    loaded = SimpleNamespace(lm_arpa=lm_arpa, rnnlm=rnnlm)
    decoding = DecodeConfig(decoder="beam", lm_weight=lm_weight, rnnlm_weight=rnnlm_weight)
    assert bench.describe_decoding(loaded, decoding) == label
    assert bench.describe_decoding(loaded, replace(decoding, decoder="greedy")) == "greedy"


@pytest.mark.parametrize("form", ["exported", "checkpoint"])
def test_a_model_is_scored_in_either_form_with_its_own_decoding_and_greedy(bench, form):
    from asr.cli import BUNDLED_CHECKPOINT, BUNDLED_MODEL

    path = BUNDLED_MODEL if form == "exported" else BUNDLED_CHECKPOINT
    columns = dict(bench.model_decoders(path, ["default", "greedy"], "cpu", threads=1))
    name = "an4_blstm/onnx" if form == "exported" else "an4_blstm"
    assert list(columns) == [f"{name} beam+RNNLM", f"{name} greedy"]
    example = str(Path(__file__).resolve().parents[1] / "examples" / "an4_test_example.wav")
    texts = {label: bench.transcribe_all(t, [example])[0] for label, t in columns.items()}
    assert [t.decoding.decoder for t in columns.values()] == ["beam", "greedy"]
    assert all(len(text.split()) == 5 for text in texts.values())  # J P E G FOUR, one letter may be misheard


def test_an_extra_split_is_evaluated_beside_the_an4_splits(bench, tones, tmp_path):
    """--extra-split NAME=MANIFEST:N adds N utterances spread over another corpus's manifest; the
    AN4 splits come from --data-dir, and babble is drawn from AN4 only."""
    from asr.manifest import write_manifest

    for split in ("train", "dev", "test"):
        write_manifest(tmp_path / f"{split}.jsonl",
                       [Utterance(f"{split}{n}", str(tones[f"talker{n}"]), 1.0, "A", f"{split}{n}") for n in range(6)])
    other = [Utterance(f"o{n}", str(tones["utt"]), 1.6, "HELLO", f"x{n}") for n in range(10)]
    write_manifest(tmp_path / "other.jsonl", other)
    args = SimpleNamespace(data_dir=tmp_path, an4_dir=None, cache=tmp_path / "cache", quick=False,
                           noise_dir=tmp_path, extra_split=[f"other_test={tmp_path / 'other.jsonl'}:5"])
    splits = ["test", *bench.extra_splits(args.extra_split)]
    _, evaluated, _ = bench.copy_sources(args, SimpleNamespace(skip=pytest.fail), splits, ["clean"])
    assert list(evaluated) == ["test", "other_test"]
    assert [u.id for u in evaluated["other_test"]] == ["o0", "o2", "o4", "o6", "o8"]


def test_pocketsphinx_decodes_each_file_as_a_new_decoder_would_in_any_order_or_process(peer, an4_dir):
    """Live CMN carries over from one file to the next unless reset: without the reset, a file's
    words depended on the file decoded before it (and on which worker process got it)."""
    pytest.importorskip("pocketsphinx")
    paths = [str(p) for p in sorted((an4_dir / "wav" / "an4test_clstk").rglob("*.wav"))[:6]]
    label, in_order = peer.sphinx_transcriber(None, jobs=1)
    forwards = in_order(paths)
    assert label == "pocketsphinx en-us" and any(forwards)
    assert in_order(paths[::-1])[::-1] == forwards
    assert [peer.Pocketsphinx(None).transcribe(p) for p in paths] == forwards
    _, two_workers = peer.sphinx_transcriber(None, jobs=2)
    assert two_workers(paths) == forwards
