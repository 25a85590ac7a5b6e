"""Robustness: word error rate of models on deterministic degraded copies of AN4 dev and test.

    python bench/robustness.py [--an4-dir ../shared/data/an4 | --data-dir exp/an4/data]
        [--model PATH ...] [--decoders default,greedy] [--splits dev,test] [--conditions clean,white_10dB,...]
        [--cache exp/robustness/audio] [--noise-dir ../shared/data/noise] [--pocketsphinx] [--threads 2] [--quick]

Data: dev = the 6 training speakers the AN4 recipe holds out, test = an4test_clstk, built with
recipes/an4/local/prepare.py from --an4-dir (or read from --data-dir: the recipe's dev.jsonl,
test.jsonl and train.jsonl). Babble is made of training utterances of the other speakers.

Conditions, each utterance's copy a deterministic function of (condition, utterance id), made
with the asr.augment functions and written once as WAV under --cache (reused while complete):
  clean              the original files
  gain_-30dB         x 10^(-30/20), written as 16-bit WAV (5 fewer bits of resolution)
  peak_0.9           peak-normalised to 0.9
  white_{20,10,5}dB  white Gaussian noise at that SNR (whole-utterance power)
  pink_{20,10,5}dB   pink (1/f) noise at that SNR
  babble_10dB        5 other speakers' training utterances, equally loud, summed, at 10 dB
  reverb_rt60_{0.4,0.8}  a simulated shoebox room of that (Sabine) RT60, one of ROOMS_PER_RT60
                     per RT60; the whole reverberant tail is kept
  telephone_mulaw    8 kHz, 300-3400 Hz, written as a G.711 mu-law WAV (soundfile 'ULAW'):
                     the model reads real 8 kHz input and resamples it
  trimmed            leading/trailing frames more than 35 dB below the loudest 25 ms frame cut off
  real_noise_10dB    a real recording (doing_the_dishes, dude_miaowing, exercise_bike,
                     running_tap) from a random offset at 10 dB
Attribution: real_noise_10dB uses the background-noise recordings of the Speech Commands
dataset v0.01 (P. Warden, 2018, arXiv:1804.03209), CC BY 4.0, unchanged; see
../shared/data/noise/LICENSE. The results JSON repeats this notice.

Each model is scored with its own default decoding and with greedy decoding (--decoders);
--pocketsphinx adds CMU pocketsphinx 5 (its en-us acoustic model with AN4's own unigram LM and
dictionary, etc/an4.lm and etc/an4.dic) when it is installed; --pocketsphinx-en-us adds it with its
own general US-English 3-gram and CMU dictionary (the peer for general English).
--extra-split NAME=MANIFEST[:N] scores another corpus's utterances too (e.g.
so762_test=exp/english/data/test_so762.jsonl:500: N utterances spread evenly over the manifest,
every speaker kept); its degraded copies are made the same way (babble from AN4 training speakers). Writes results/robustness.json
(a subset of splits or conditions: results/robustness_partial.json; --quick: 10 utterances per
split, results/robustness_quick.json) and prints the WER table and the decode time per condition.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import json
import os
import re
import time
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
from asr.manifest import Utterance, read_manifest, write_manifest
from asr.errors import ASRError

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
DEFAULT_MODEL = ROOT / "asr" / "pretrained" / "an4_blstm" / "model.pt"
CACHE_VERSION = 1  # bump when a degradation changes: cached copies of an older version are rebuilt
DEV_SPEAKERS = 6  # the AN4 recipe's default (prepare.py --dev-speakers)
QUICK_UTTERANCES = 10  # per split, for --quick
BATCH_SIZE = 32

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


# ---------------------------------------------------------------------------- data and cache


def load_prepare():
    """recipes/an4/local/prepare.py as a module (recipes are not a package)."""
    spec = importlib.util.spec_from_file_location("an4_prepare", ROOT / "recipes" / "an4" / "local" / "prepare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def an4_splits(an4_dir: Path | None, data_dir: Path | None) -> dict[str, list[Utterance]]:
    """{"train", "dev", "test"} utterances: the recipe's manifests in data_dir, else made from an4_dir."""
    if data_dir is not None:
        return {split: read_manifest(data_dir / f"{split}.jsonl") for split in ("train", "dev", "test")}
    prepare = load_prepare()
    train, dev = prepare.split_dev(prepare.read_split(an4_dir, "train"), DEV_SPEAKERS)
    return {"train": train, "dev": dev, "test": prepare.read_split(an4_dir, "test")}


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


# ---------------------------------------------------------------------------- decoding


def model_label(path: Path) -> str:
    """asr/pretrained/an4_blstm/model.pt -> an4_blstm; exp/an4_s1/blstm/best_lm.pt -> an4_s1/best_lm;
    an exported folder exp/an4_s3/bundle/onnx_int8 -> bundle/onnx_int8."""
    if path.is_dir():
        return f"{path.parent.name}/{path.name}"
    return path.parent.name if path.stem == "model" else f"{path.parent.parent.name}/{path.stem}"


def load_transcriber(path: Path, device: str = "cpu", threads: int | None = None):
    """(back end, Transcriber with the model's own decoding) for a checkpoint (PyTorch on
    `device`) or an exported folder (onnxruntime, `threads` intra-op threads): asr.loading."""
    from asr.loading import load_backend

    loaded = load_backend(path, device, threads)
    return loaded, transcriber_for(loaded)


def transcriber_for(loaded, decoding=None):
    """A Transcriber of a loaded back end, with `decoding` or the model's own."""
    from asr.transcribe import Transcriber

    return Transcriber(loaded, batch_size=BATCH_SIZE, decoding=decoding)


def describe_decoding(loaded, decoding) -> str:
    """greedy, beam (no LM), beam+LM (n-gram), beam+RNNLM or beam+LM+RNNLM: the LMs whose weight is not 0."""
    if decoding.decoder == "greedy":
        return "greedy"
    ngram = "+LM" if loaded.lm_arpa and decoding.lm_weight else ""
    recurrent = "+RNNLM" if loaded.rnnlm is not None and decoding.rnnlm_weight else ""
    return f"beam{ngram}{recurrent}"


def model_decoders(model_path: Path, decoders: Sequence[str], device: str, threads: int | None = None
                   ) -> list[tuple[str, object]]:
    """[(column label, Transcriber)] for one model (a checkpoint or an exported folder): its default
    decoding and/or greedy (one column when they are the same)."""
    loaded, own = load_transcriber(model_path, device, threads)
    columns: dict[str, object] = {}
    for name in decoders:
        decoding = loaded.decoding if name == "default" else dataclasses.replace(loaded.decoding, decoder="greedy")
        label = f"{model_label(model_path)} {describe_decoding(loaded, decoding)}"
        if label not in columns:
            columns[label] = own if name == "default" else transcriber_for(loaded, decoding)
    return list(columns.items())


def transcribe_all(transcriber, paths: Sequence[str]) -> list[str]:
    transcripts = list(transcriber.transcribe((path, None) for path in paths))
    failed = [t.error for t in transcripts if t.error]
    if failed:
        raise ASRError(failed[0])
    return [t.text for t in transcripts]


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
        self.decoder.start_utt()
        self.decoder.process_raw(pcm.tobytes(), full_utt=True)
        self.decoder.end_utt()
        hypothesis = self.decoder.hyp()
        return normalise_pocketsphinx(hypothesis.hypstr) if hypothesis else ""


POCKETSPHINX_AN4 = "pocketsphinx"  # the label of the AN4-LM row (earlier result files use it)


def score(refs: Sequence[str], hyps: Sequence[str]) -> dict:
    from asr.metrics import error_rates

    report = error_rates(refs, hyps)
    w = report.words
    return {"wer": round(report.wer, 4), "cer": round(report.cer, 4), "word_errors": w.errors, "words": w.reference_length,
            "substitutions": w.substitutions, "deletions": w.deletions, "insertions": w.insertions}


# ---------------------------------------------------------------------------- main


def parse_list(value: str, known: Sequence[str], what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in items if v not in known]
    if unknown or not items:
        raise SystemExit(f"robustness.py: unknown {what} {', '.join(unknown) or '(none given)'}; known: {', '.join(known)}")
    return items


def add_copy_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that say which degraded copies to score and where they are (shared with
    bench/beam_threshold.py): --an4-dir / --data-dir, --noise-dir, --cache, --splits, --conditions."""
    parser.add_argument("--an4-dir", type=Path, default=SHARED_DATA / "an4")
    parser.add_argument("--data-dir", type=Path, default=None, help="the recipe's manifests (train/dev/test.jsonl) instead")
    parser.add_argument("--noise-dir", type=Path, default=SHARED_DATA / "noise")
    parser.add_argument("--cache", type=Path, default=Path("exp/robustness/audio"))
    parser.add_argument("--splits", default="dev,test")
    parser.add_argument("--extra-split", action="append", default=[], metavar="NAME=MANIFEST[:N]",
                        help="also score this manifest's utterances (N: spread evenly over it), e.g. "
                             "so762_test=exp/english/data/test_so762.jsonl:500")
    parser.add_argument("--conditions", default=",".join(CONDITIONS))


def copy_sources(args: argparse.Namespace, rep, splits: Sequence[str], conditions: Sequence[str]
                 ) -> tuple[Path, dict[str, list[Utterance]], Degrader]:
    """(cache folder, the utterances evaluated per split, the Degrader) for add_copy_arguments'
    options; skips the benchmark (rep.skip) when AN4 is not there. --quick: QUICK_UTTERANCES per
    split, in a cache of their own."""
    if args.data_dir is None and not (args.an4_dir / "etc" / "an4_train.fileids").is_file():
        rep.skip(f"AN4 not found at {args.an4_dir} (--an4-dir, or --data-dir with the recipe's manifests)")
    cache = args.cache.with_name(args.cache.name + "_quick") if args.quick else args.cache
    corpus = an4_splits(args.an4_dir, args.data_dir)
    evaluated = {s: sorted(corpus[s], key=lambda u: u.id)[:QUICK_UTTERANCES] if args.quick else corpus[s]
                 for s in splits}
    for name, utterances in extra_splits(args.extra_split).items():
        evaluated[name] = utterances[:QUICK_UTTERANCES] if args.quick else utterances
    noises = load_real_noises(args.noise_dir) if "real_noise_10dB" in conditions else []
    an4_only = [s for s in splits if s in corpus]
    return cache, evaluated, Degrader(babble_pool(corpus, an4_only), noises)


def extra_splits(specs: Sequence[str]) -> dict[str, list[Utterance]]:
    """--extra-split NAME=MANIFEST[:N] -> {NAME: utterances}; with N, N of them spread evenly (every
    len/N-th in the manifest's order, so every speaker of a speaker-sorted manifest stays)."""
    splits = {}
    for spec in specs:
        name, _, rest = spec.partition("=")
        path, _, count = rest.partition(":")
        if not name or not path or (count and not count.isdigit()):
            raise SystemExit(f"robustness.py: --extra-split {spec!r}: expected NAME=MANIFEST[:N]")
        utterances = read_manifest(path)
        if count and int(count) < len(utterances):
            step = len(utterances) / int(count)
            utterances = [utterances[int(i * step)] for i in range(int(count))]
        splits[name] = utterances
    return splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_copy_arguments(parser)
    parser.add_argument("--model", type=Path, action="append", help=f"repeatable (default {DEFAULT_MODEL.relative_to(ROOT)})")
    parser.add_argument("--decoders", default="default,greedy")
    parser.add_argument("--pocketsphinx", action="store_true", help="also score pocketsphinx with AN4's LM (if installed)")
    parser.add_argument("--pocketsphinx-en-us", action="store_true",
                        help="also score pocketsphinx with its own general US-English LM and dictionary")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK_UTTERANCES} utterances per split")
    parser.add_argument("--name", default="robustness", help="results/NAME.json (default robustness)")
    args = parser.parse_args()

    import torch

    from report import Report

    torch.set_num_threads(args.threads)
    splits_wanted = parse_list(args.splits, ("dev", "test"), "split") + list(extra_splits(args.extra_split))
    conditions = parse_list(args.conditions, CONDITIONS, "condition")
    partial_run = len(splits_wanted) < 2 or len(conditions) < len(CONDITIONS)
    rep = Report(f"{args.name}_partial" if partial_run else args.name, quick=args.quick)  # a subset never overwrites the full table
    decoders = parse_list(args.decoders, ("default", "greedy"), "decoder")
    models = args.model or [DEFAULT_MODEL]
    cache, evaluated, degrader = copy_sources(args, rep, splits_wanted, conditions)

    copies: dict[tuple[str, str], list[Utterance]] = {}
    build_seconds, condition_info = {}, {}
    for condition in conditions:
        started = time.perf_counter()
        made = False
        for split in splits_wanted:
            copy = cached_condition(cache, split, condition, evaluated[split], degrader)
            copies[split, condition], made = copy.utterances, made or copy.made
            condition_info[condition] = copy.info or condition_info.get(condition, {})
        build_seconds[condition] = round(time.perf_counter() - started, 1) if made else None
        print(f"  {condition}: {'made' if made else 'cached'} ({time.perf_counter() - started:.1f} s)", flush=True)

    systems: list[tuple[str, Callable[[list[str]], list[str]]]] = []
    for model in models:
        for label, transcriber in model_decoders(model, decoders, args.device, args.threads):
            transcribe_all(transcriber, [u.audio for u in evaluated[splits_wanted[0]][:BATCH_SIZE]])  # warm-up
            systems.append((label, partial(transcribe_all, transcriber)))
    for wanted, an4_dir in ((args.pocketsphinx, args.an4_dir), (args.pocketsphinx_en_us, None)):
        if not wanted:
            continue
        try:
            sphinx = Pocketsphinx(an4_dir)
            systems.append((sphinx.label, lambda paths, sphinx=sphinx: [sphinx.transcribe(p) for p in paths]))
        except ImportError:
            print("robustness: pocketsphinx is not installed: its row is skipped (pip install pocketsphinx)")

    rows = []
    for label, transcribe in systems:
        for condition in conditions:
            for split in splits_wanted:
                utterances = copies[split, condition]
                started = time.perf_counter()
                hyps = transcribe([u.audio for u in utterances])
                seconds = time.perf_counter() - started
                rows.append({"system": label, "split": split, "condition": condition,
                             **score([u.text for u in utterances], hyps), "decode_seconds": round(seconds, 2),
                             "audio_seconds": round(sum(u.duration for u in utterances), 1)})
            print(f"  {label} {condition}: " + ", ".join(
                f"{r['split']} {100 * r['wer']:.2f} %" for r in rows[-len(splits_wanted):]), flush=True)

    labels = [label for label, _ in systems]
    wer_table, time_table = tables(rows, labels, conditions, splits_wanted)
    summary_table, summary_columns = seed_summary(rows, conditions, splits_wanted)
    rep.write(
        {"splits": {s: len(evaluated[s]) for s in splits_wanted}, "models": [str(m) for m in models],
         "systems": labels, "conditions": conditions, "cache": str(cache), "cache_build_seconds": build_seconds,
         "condition_info": {c: info for c, info in condition_info.items() if info},
         "babble_pool_utterances": len(degrader.babble_pool), "noise_attribution": NOISE_ATTRIBUTION,
         "threads": args.threads, "rows": rows},
        tables=[
            ("WER % by condition (rows) and system / split (columns)", wer_table, ["condition", *wer_columns(labels, splits_wanted)]),
            ("Decode seconds per condition (all evaluated splits)", time_table, ["condition", *labels]),
            ("WER % over the models given: mean (min-max), per decoding", summary_table, ["condition", *summary_columns]),
        ],
    )
    print(f"\n{NOISE_ATTRIBUTION}")


def seed_summary(rows: list[dict], conditions: Sequence[str], splits: Sequence[str]) -> tuple[list[dict], list[str]]:
    """With several models (e.g. seeds of one config): per condition, decoding and split, the mean
    WER % and its range over the models, as 'mean (min-max)'. Empty with fewer than 2 models."""
    models = [r for r in rows if not r["system"].startswith(POCKETSPHINX_AN4)]
    kinds = sorted({r["system"].rsplit(" ", 1)[1] for r in models})
    columns = [f"{kind} {split}" for kind in kinds for split in splits]
    table = []
    for condition in conditions:
        row = {"condition": condition}
        for kind in kinds:
            for split in splits:
                wers = [100 * r["wer"] for r in models if r["condition"] == condition and r["split"] == split
                        and r["system"].rsplit(" ", 1)[1] == kind]
                if len(wers) >= 2:
                    row[f"{kind} {split}"] = f"{np.mean(wers):.2f} ({min(wers):.2f}-{max(wers):.2f})"
        table.append(row)
    return (table, columns) if any(len(r) > 1 for r in table) else ([], [])


def wer_columns(labels: Sequence[str], splits: Sequence[str]) -> list[str]:
    return [f"{label} {split}" for label in labels for split in splits]


def tables(rows: list[dict], labels: Sequence[str], conditions: Sequence[str], splits: Sequence[str]) -> tuple[list[dict], list[dict]]:
    """(WER % table, decode seconds table): one row per condition."""
    wer_rows, time_rows = [], []
    for condition in conditions:
        mine = [r for r in rows if r["condition"] == condition]
        wer_rows.append({"condition": condition, **{
            f"{r['system']} {r['split']}": f"{100 * r['wer']:.2f}" for r in mine}})
        time_rows.append({"condition": condition, **{
            label: round(sum(r["decode_seconds"] for r in mine if r["system"] == label), 2) for label in labels}})
    return wer_rows, time_rows


if __name__ == "__main__":
    main()
