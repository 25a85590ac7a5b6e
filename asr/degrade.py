"""Deterministic degraded copies of audio, for judging a model on audio unlike its training set
(bench/robustness.py, bench/beam_threshold.py): 15 named conditions, each utterance's copy a
function of (condition, utterance id) only, made with the training augmentation's functions
(asr.augment) and cached as WAV files.

    degrader = Degrader(babble_pool=[...training wavs...], noises=load_real_noises(noise_dir))
    copy = cached_condition(cache, "test", "white_10dB", utterances, degrader)  # -> ConditionCopy

Conditions:
  clean              the original files
  gain_-30dB         x 10^(-30/20), written as 16-bit WAV (5 fewer bits of resolution)
  peak_0.9           peak-normalised to 0.9
  white_{20,10,5}dB  white Gaussian noise at that SNR (whole-utterance power)
  pink_{20,10,5}dB   pink (1/f) noise at that SNR
  babble_10dB        5 other speakers' training utterances, equally loud, summed, at 10 dB
  reverb_rt60_{0.4,0.8}  a simulated shoebox room of that (Sabine) RT60, one of ROOMS_PER_RT60
                     per RT60; the whole reverberant tail is kept
  telephone_mulaw    8 kHz, 300-3400 Hz, written as a G.711 mu-law WAV
  trimmed            leading/trailing frames more than 35 dB below the loudest 25 ms frame cut off
  real_noise_10dB    a real recording (REAL_NOISES) from a random offset at 10 dB (see NOISE_ATTRIBUTION)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import soundfile as sf

from asr.audio import SAMPLE_RATE, load_audio
from asr.augment import (
    TELEPHONE_RATE,
    AugmentConfig,
    RirBank,
    apply_gain,
    babble,
    coloured_noise,
    limit_peak,
    mix_at_snr,
    reverberate,
    telephone_band,
    trim_to_speech,
)
from asr.errors import ASRError
from asr.manifest import Utterance, read_manifest, write_manifest

CACHE_VERSION = 1  # bump when a degradation changes: cached copies of an older version are rebuilt
BABBLE_TALKERS = 5
ROOMS_PER_RT60 = 8  # simulated rooms per reverberation condition (one drawn per utterance)
TRIM_TOP_DB = 35.0  # "trimmed": frames this far below the loudest frame are silence
REAL_NOISES = ("doing_the_dishes", "dude_miaowing", "exercise_bike", "running_tap")  # not the generated pink/white
NOISE_ATTRIBUTION = (
    "real_noise_10dB mixes in the background-noise recordings of the Speech Commands dataset v0.01 "
    "(P. Warden, 2018, arXiv:1804.03209), CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/), unchanged."
)

CONDITIONS = (
    "clean", "gain_-30dB", "peak_0.9",
    "white_20dB", "white_10dB", "white_5dB", "pink_20dB", "pink_10dB", "pink_5dB",
    "babble_10dB", "reverb_rt60_0.4", "reverb_rt60_0.8", "telephone_mulaw", "trimmed", "real_noise_10dB",
)


@dataclasses.dataclass(frozen=True)
class Degraded:
    """One degraded utterance as it is written: samples (N,) float32 at sample_rate, WAV subtype."""

    samples: np.ndarray
    sample_rate: int = SAMPLE_RATE
    subtype: str = "PCM_16"


def stable_seed(*parts: str) -> int:
    """A 64-bit seed from strings, the same in every process and Python version (unlike hash())."""
    return int.from_bytes(hashlib.sha256("/".join(parts).encode()).digest()[:8], "little")


def condition_rng(condition: str, utt_id: str) -> np.random.Generator:
    """The Generator behind one utterance's copy in one condition."""
    return np.random.default_rng(stable_seed(condition, utt_id))


class Degrader:
    """Makes each condition's copy of an utterance: degrade(condition, utt_id, samples) -> Degraded.

    babble_pool: audio paths of training utterances (speakers outside the evaluated sets);
    noises: recordings (N,) float32 at SAMPLE_RATE for real_noise_10dB. Each reverberation
    condition's rooms (a RirBank seeded by the condition's name) are simulated on first use.
    """

    def __init__(self, babble_pool: Sequence[str], noises: Sequence[np.ndarray], rooms_per_rt60: int = ROOMS_PER_RT60):
        self.babble_pool = list(babble_pool)
        self.noises = list(noises)
        self.rooms_per_rt60 = rooms_per_rt60
        self.banks: dict[float, RirBank] = {}
        self.recipes: dict[str, Callable[[np.ndarray, np.random.Generator], Degraded]] = {
            "gain_-30dB": lambda x, rng: Degraded(apply_gain(x, -30.0)),
            "peak_0.9": lambda x, rng: Degraded(peak_normalise(x, 0.9)),
            "babble_10dB": partial(self.add_babble, snr_db=10.0),
            "telephone_mulaw": lambda x, rng: Degraded(telephone_band(x, SAMPLE_RATE), TELEPHONE_RATE, "ULAW"),
            "trimmed": lambda x, rng: Degraded(trim_silence(x)),
            "real_noise_10dB": partial(self.add_real_noise, snr_db=10.0),
        }
        for colour in ("white", "pink"):
            for snr_db in (20, 10, 5):
                self.recipes[f"{colour}_{snr_db}dB"] = partial(add_coloured_noise, colour=colour, snr_db=float(snr_db))
        for rt60 in (0.4, 0.8):
            self.recipes[f"reverb_rt60_{rt60}"] = partial(self.reverberate, rt60=rt60)

    def degrade(self, condition: str, utt_id: str, samples: np.ndarray) -> Degraded:
        """samples (N,) float32 at SAMPLE_RATE -> the condition's copy, drawn from condition_rng."""
        if condition == "clean":
            return Degraded(samples)
        return self.recipes[condition](samples, condition_rng(condition, utt_id))

    def add_babble(self, samples: np.ndarray, rng: np.random.Generator, snr_db: float) -> Degraded:
        picks = rng.choice(len(self.babble_pool), size=BABBLE_TALKERS, replace=False)
        talkers = [load_audio(self.babble_pool[i], SAMPLE_RATE) for i in picks]
        return Degraded(limit_peak(mix_at_snr(samples, babble(talkers, len(samples), rng), snr_db)))

    def add_real_noise(self, samples: np.ndarray, rng: np.random.Generator, snr_db: float) -> Degraded:
        noise = self.noises[int(rng.integers(len(self.noises)))]
        return Degraded(limit_peak(mix_at_snr(samples, noise, snr_db, rng)))

    def reverberate(self, samples: np.ndarray, rng: np.random.Generator, rt60: float) -> Degraded:
        return Degraded(limit_peak(reverberate(samples, self.bank(rt60).draw(rng))))

    def info(self, condition: str) -> dict:
        """For a reverberation condition: its rooms' RT60 as designed and as measured on the
        simulated response (Schroeder integral, T20 x 3, pyroomacoustics); else nothing."""
        if not condition.startswith("reverb_rt60_"):
            return {}
        import pyroomacoustics as pra

        bank = self.bank(float(condition.removeprefix("reverb_rt60_")))
        measured = [float(pra.experimental.measure_rt60(rir, SAMPLE_RATE, decay_db=20)) for rir in bank.rirs]
        return {"rooms": len(bank), "rt60_design_s": bank.rt60s[0], "rt60_measured_s": [round(m, 3) for m in measured],
                "rt60_measured_mean_s": round(float(np.mean(measured)), 3)}

    def bank(self, rt60: float) -> RirBank:
        """The rooms of reverb_rt60_<rt60>, simulated once (seconds to a minute)."""
        if rt60 not in self.banks:
            config = AugmentConfig(rt60=(rt60, rt60))
            self.banks[rt60] = RirBank(config, SAMPLE_RATE, self.rooms_per_rt60, stable_seed(f"reverb_rt60_{rt60}") % 2**32)
        return self.banks[rt60]


def add_coloured_noise(samples: np.ndarray, rng: np.random.Generator, colour: str, snr_db: float) -> Degraded:
    return Degraded(limit_peak(mix_at_snr(samples, coloured_noise(len(samples), colour, rng), snr_db)))


def peak_normalise(samples: np.ndarray, peak: float) -> np.ndarray:
    """samples (N,) scaled so that max |x| = peak (a silent input stays silent)."""
    current = float(np.max(np.abs(samples), initial=0.0))
    return samples if current == 0 else (samples * np.float32(peak / current)).astype(np.float32)


def trim_silence(samples: np.ndarray) -> np.ndarray:
    """samples (N,) without the leading and trailing 25 ms frames more than TRIM_TOP_DB below the
    loudest frame (asr.augment.trim_to_speech, no margin: what training's trimming imitates)."""
    return trim_to_speech(samples, SAMPLE_RATE, TRIM_TOP_DB)


def write_degraded(path: Path, degraded: Degraded) -> None:
    """A WAV file of degraded (written to a temp name, then renamed: never half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    sf.write(tmp, degraded.samples, degraded.sample_rate, subtype=degraded.subtype, format="WAV")
    os.replace(tmp, path)


def babble_pool(splits: dict[str, list[Utterance]], evaluated: Sequence[str]) -> list[str]:
    """Audio paths of training utterances whose speakers are in none of the evaluated splits (nor dev)."""
    excluded = {u.speaker for split in {*evaluated, "dev"} for u in splits[split]}
    pool = [u.audio for u in splits["train"] if u.speaker not in excluded]
    if len(pool) < BABBLE_TALKERS:
        raise ASRError(f"babble needs {BABBLE_TALKERS} training utterances from other speakers, found {len(pool)}")
    return pool


def load_real_noises(noise_dir: Path) -> list[np.ndarray]:
    missing = [n for n in REAL_NOISES if not (noise_dir / f"{n}.wav").is_file()]
    if missing:
        raise ASRError(f"{noise_dir}: missing noise recordings {', '.join(missing)}.wav (--noise-dir)")
    return [load_audio(noise_dir / f"{name}.wav", SAMPLE_RATE) for name in REAL_NOISES]


@dataclasses.dataclass(frozen=True)
class ConditionCopy:
    utterances: list[Utterance]  # the copies (audio in the cache), or the originals for clean
    made: bool  # made by this run (else read from the cache)
    info: dict  # what the degradation drew that the results should show (Degrader.info)


def cached_condition(
    cache: Path, split: str, condition: str, utterances: list[Utterance], degrader: Degrader
) -> ConditionCopy:
    """The condition's copies of `utterances`: WAVs in <cache>/<split>/<condition>/, manifest
    <cache>/<split>/<condition>.jsonl. A complete earlier copy (its .done marker names the same
    utterances and CACHE_VERSION) is reused. clean is the original files."""
    if condition == "clean":
        return ConditionCopy(utterances, False, {})
    folder, manifest = cache / split / condition, cache / split / f"{condition}.jsonl"
    marker = cache / split / f"{condition}.done"
    fingerprint = {"version": CACHE_VERSION, "ids": [u.id for u in utterances]}
    if marker.is_file():
        done = json.loads(marker.read_text())
        if done.get("fingerprint") == fingerprint and manifest.is_file():
            return ConditionCopy(read_manifest(manifest), False, done.get("info", {}))
    folder.mkdir(parents=True, exist_ok=True)
    copies = []
    for utt in utterances:
        degraded = degrader.degrade(condition, utt.id, load_audio(utt.audio, SAMPLE_RATE))
        path = folder / f"{utt.id}.wav"
        write_degraded(path, degraded)
        seconds = round(len(degraded.samples) / degraded.sample_rate, 3)
        copies.append(dataclasses.replace(utt, audio=str(path.resolve()), duration=seconds))
    write_manifest(manifest, copies)
    info = degrader.info(condition)
    marker.write_text(json.dumps({"fingerprint": fingerprint, "info": info}))
    return ConditionCopy(copies, True, info)
