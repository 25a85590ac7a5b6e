"""Synthetic speech for the general-English recipe: sentences drawn from pocketsphinx's US-English
3-gram, spoken by the text-to-speech programs Debian ships (flite, espeak-ng), as a manifest of
16 kHz WAV files to mix into training.

    python recipes/english/local/synthesize.py --out-dir exp/english/data/synth --sentences 3000 \\
        --exclude exp/english/data/dev.jsonl exp/english/data/test_so762.jsonl exp/english/data/test_an4.jsonl \\
        [--train-text exp/english/data/lm_text.txt] [--vocab exp/english/data/bpe256/vocab.json] \\
        [--engines flite,espeak-ng] [--jobs 2] [--seed 1]

Why: the model hears only the ~2600 words of speechocean762's training speech and AN4's 100; on dev it
writes the words it heard 50 times or more about half the time, and those it heard fewer than 50 times
almost never. Sentences of general English (the 20 000 most probable words of the general LM that the
model can spell, as recipes/english/local/build_lm.py restricts it) carry many more words into the
training audio, in machine voices: flite's four US voices and espeak-ng's English accents, each with
its pitch and rate drawn per sentence (only voices the installed engines list: both speak an
unknown voice's name in their default voice without a word).

Sentences equal to a transcript of an --exclude manifest (dev and test sets) are dropped. Writes
<out-dir>/wav/<id>.wav (16-bit PCM, 16 kHz), <out-dir>/synth.jsonl (speaker: the engine and voice)
and <out-dir>/plan.json (the sentences and voices, written first): a killed run resumes, keeping the
files already written, when its plan is the same. Needs the engines (apt install flite espeak-ng)
and the pocketsphinx package (the LM). Licences: flite and its voices, CMU's BSD-style licence;
espeak-ng, GPL-3 (the program; the audio it writes carries no licence of its own); pocketsphinx's
LM, BSD 2-clause. recipes/english/run.sh --synth-sentences N runs it (stage 2) and mixes the result
into training.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))

from build_lm import general_vocabulary, read_general_lm, sphinx_lm_path  # noqa: E402

from asr.arpa import BackoffLM, sample_sentences  # noqa: E402
from asr.atomic import atomic_write, write_text_atomically  # noqa: E402
from asr.audio import resample  # noqa: E402
from asr.errors import ASRError  # noqa: E402
from asr.lm import UNK  # noqa: E402
from asr.lm_edit import restrict_vocab  # noqa: E402
from asr.manifest import Utterance, read_manifest, write_manifest  # noqa: E402
from asr.text import Vocab  # noqa: E402

SAMPLE_RATE = 16000
ENGINES = ("flite", "espeak-ng")
FLITE_VOICES = ("kal16", "awb", "rms", "slt")  # the US voices compiled into Debian's flite
ESPEAK_VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029")
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2")
MIN_WORDS, MAX_WORDS = 3, 14
TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Voice:
    """One sentence's speaker: an engine, its voice and the pitch and rate drawn for the sentence."""
    engine: str
    name: str
    pitch: float  # flite: mean F0 in Hz; espeak-ng: -p 0..99
    rate: float  # flite: duration stretch (> 1 slower); espeak-ng: words per minute

    @property
    def speaker(self) -> str:
        return f"synth-{self.engine}-{self.name}"

    def command(self, text: str, wav: Path) -> list[str]:
        if self.engine == "flite":
            return ["flite", "-voice", self.name, "--setf", f"int_f0_target_mean={self.pitch:.0f}",
                    "--setf", f"duration_stretch={self.rate:.2f}", "-t", text, "-o", str(wav)]
        return ["espeak-ng", "-v", self.name, "-p", f"{self.pitch:.0f}", "-s", f"{self.rate:.0f}",
                "-w", str(wav), text]


@dataclass(frozen=True)
class Menu:
    """The voices each engine offers here: flite's voices; espeak-ng's accents and variants."""
    flite: tuple[str, ...] = ()
    espeak_accents: tuple[str, ...] = ()
    espeak_variants: tuple[str, ...] = ()

    @property
    def engines(self) -> tuple[str, ...]:
        return (("flite",) if self.flite else ()) + (("espeak-ng",) if self.espeak_accents else ())


def draw_voice(menu: Menu, rng: np.random.Generator) -> Voice:
    """A voice of one of the menu's engines (each equally likely), with its pitch and rate drawn."""
    engines = menu.engines
    engine = engines[rng.integers(len(engines))]
    if engine == "flite":
        name = menu.flite[rng.integers(len(menu.flite))]
        low, high = (140.0, 260.0) if name == "slt" else (85.0, 160.0)
        return Voice(engine, name, float(rng.uniform(low, high)), float(rng.uniform(0.85, 1.3)))
    accent = menu.espeak_accents[rng.integers(len(menu.espeak_accents))]
    variant = menu.espeak_variants[rng.integers(len(menu.espeak_variants))]
    return Voice(engine, f"{accent}+{variant}", float(rng.uniform(20, 80)), float(rng.uniform(125, 190)))


def _listing(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=True).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise ASRError(f"{' '.join(command)}: cannot list the voices ({err})") from None


def installed_voices(engine: str) -> set[str]:
    """The voices an installed engine lists: flite's names; espeak-ng's languages and its variants
    (as '+name'). Both engines speak an unknown voice's name in their default voice without an
    error, so only listed voices are used."""
    if engine == "flite":
        return set(_listing(["flite", "-lv"]).partition(":")[2].split())
    languages = [row.split() for row in _listing(["espeak-ng", "--voices=en"]).splitlines()[1:]]
    variants = [row.split() for row in _listing(["espeak-ng", "--voices=variant"]).splitlines()[1:]]
    return ({row[1] for row in languages if len(row) > 1}
            | {"+" + row[4].removeprefix("!v/") for row in variants if len(row) > 4})


def voice_menu(engines: tuple[str, ...]) -> Menu:
    """The wanted voices (FLITE_VOICES; ESPEAK_VOICES with ESPEAK_VARIANTS) that `engines` have here."""
    unknown = [e for e in engines if e not in ENGINES]
    if unknown or not engines:
        raise ASRError(f"unknown engine {(unknown or [''])[0]!r}: choose from {', '.join(ENGINES)}")
    missing = [e for e in engines if shutil.which(e) is None]
    if missing:
        raise ASRError(f"{missing[0]} not found on PATH: install it (apt install {' '.join(missing)}) "
                       "or leave it out of --engines")
    flite: tuple[str, ...] = ()
    accents: tuple[str, ...] = ()
    variants: tuple[str, ...] = ()
    if "flite" in engines:
        have = installed_voices("flite")
        flite = tuple(v for v in FLITE_VOICES if v in have)
        if not flite:
            raise ASRError(f"flite here has none of the voices {', '.join(FLITE_VOICES)}")
    if "espeak-ng" in engines:
        have = installed_voices("espeak-ng")
        accents = tuple(v for v in ESPEAK_VOICES if v in have)
        variants = tuple(v for v in ESPEAK_VARIANTS if "+" + v in have)
        if not accents or not variants:
            raise ASRError(f"espeak-ng here lacks the English voices ({', '.join(ESPEAK_VOICES)}) "
                           f"or the variants ({', '.join(ESPEAK_VARIANTS)})")
    return Menu(flite, accents, variants)


def choose_sentences(lm: BackoffLM, count: int, excluded: set[str], rng: np.random.Generator) -> list[str]:
    """`count` distinct sentences of MIN_WORDS..MAX_WORDS words drawn from the LM, none with <unk>
    and none in `excluded`, in the order drawn."""
    chosen: list[str] = []
    seen = set(excluded)
    for _ in range(20):
        for sentence in sample_sentences(lm, 4 * count, rng, max_words=MAX_WORDS + 1):
            words = sentence.split()
            if MIN_WORDS <= len(words) <= MAX_WORDS and UNK not in words and sentence not in seen:
                seen.add(sentence)
                chosen.append(sentence)
                if len(chosen) == count:
                    return chosen
    raise ASRError(f"drew only {len(chosen)} usable sentences of the {count} asked for")


def speak(text: str, voice: Voice, wav: Path) -> float:
    """Say `text` (upper-case words) with `voice` into `wav` (16 kHz 16-bit mono); its duration in s."""
    with tempfile.TemporaryDirectory(prefix="synth-") as tmp:
        raw = Path(tmp) / "out.wav"
        try:
            done = subprocess.run(voice.command(text.lower(), raw), capture_output=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise ASRError(f"{voice.engine} took over {TIMEOUT_S:.0f} s for {text!r}") from None
        if done.returncode != 0 or not raw.is_file():
            message = done.stderr.decode(errors="replace").strip().splitlines()
            raise ASRError(f"{voice.engine} failed on {text!r} (exit {done.returncode}): "
                           f"{message[-1] if message else 'no output'}")
        samples, rate = sf.read(raw, dtype="float32", always_2d=True)
    samples = samples.mean(axis=1)
    if rate != SAMPLE_RATE:
        samples = resample(samples, rate, SAMPLE_RATE)
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    if peak < 1e-4:
        raise ASRError(f"{voice.engine} ({voice.name}) wrote silence for {text!r}")
    samples = samples * min(1.0, 0.97 / peak)
    with atomic_write(wav, binary=True) as f:
        sf.write(f, samples, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return samples.shape[0] / SAMPLE_RATE


def general_lm(train_text: Path, vocab: Vocab, vocab_size: int) -> BackoffLM:
    """pocketsphinx's en-us 3-gram restricted to its `vocab_size` most probable words the model can
    spell, plus every training word (as recipes/english/local/build_lm.py restricts it)."""
    train_words = {w for line in train_text.read_text(encoding="utf-8").splitlines() for w in line.split()}
    words = read_general_lm(sphinx_lm_path())
    return restrict_vocab(words, general_vocabulary(words, vocab, vocab_size, train_words))


def synthesize(sentences: list[str], voices: list[Voice], out_dir: Path, jobs: int) -> list[Utterance]:
    """Each sentence spoken by its voice into out_dir/wav/synth-NNNNN.wav. A file already there is
    kept when out_dir/plan.json (the sentences and voices, written first) is this run's plan; a
    folder made with another plan is an error, not a mix of two sets."""
    wav_dir = out_dir / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    plan = json.dumps([[text, asdict(voice)] for text, voice in zip(sentences, voices)], indent=0) + "\n"
    plan_path = out_dir / "plan.json"
    if plan_path.is_file() and plan_path.read_text(encoding="utf-8") != plan:
        raise ASRError(f"{plan_path}: the folder holds another set of sentences or voices (other --sentences, "
                       "--seed, --engines or LM): remove it or choose another --out-dir")
    write_text_atomically(plan_path, plan)

    def one(i: int) -> Utterance:
        uid = f"synth-{i:05d}"
        wav = wav_dir / f"{uid}.wav"
        if wav.is_file():
            duration = sf.info(wav).frames / SAMPLE_RATE
        else:
            duration = speak(sentences[i], voices[i], wav)
        return Utterance(uid, str(wav.resolve()), round(duration, 3), sentences[i], voices[i].speaker)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, range(len(sentences))))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--sentences", type=int, default=3000)
    parser.add_argument("--exclude", type=Path, nargs="*", default=[],
                        help="manifests whose transcripts are never spoken (dev and test sets)")
    parser.add_argument("--train-text", type=Path, default=Path("exp/english/data/lm_text.txt"))
    parser.add_argument("--vocab", type=Path, default=Path("exp/english/data/bpe256/vocab.json"))
    parser.add_argument("--vocab-size", type=int, default=20000)
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    try:
        menu = voice_menu(tuple(e for e in args.engines.split(",") if e))
        if args.sentences < 1:
            raise ASRError(f"--sentences {args.sentences}: must be at least 1")
        vocab = Vocab.load(args.vocab)
        excluded = {u.text for path in args.exclude for u in read_manifest(path, check_audio=False)}
        rng = np.random.default_rng(args.seed)
        sentences = choose_sentences(general_lm(args.train_text, vocab, args.vocab_size), args.sentences, excluded, rng)
        voices = [draw_voice(menu, rng) for _ in sentences]
        utterances = synthesize(sentences, voices, args.out_dir, args.jobs)
        write_manifest(args.out_dir / "synth.jsonl", utterances)
    except (ASRError, OSError) as err:
        print(f"synthesize.py: {err}", file=sys.stderr)
        return 1
    hours = sum(u.duration for u in utterances) / 3600
    words = {w for s in sentences for w in s.split()}
    print(f"{len(utterances)} utterances, {hours:.2f} h, {len(words)} distinct words, "
          f"{len({u.speaker for u in utterances})} voices -> {args.out_dir / 'synth.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
