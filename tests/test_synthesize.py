"""recipes/english/local/synthesize.py: general-English sentences drawn from an LM, spoken by flite
and espeak-ng into a training manifest (the engines' own runs skip where they are not installed)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.arpa import parse_arpa
from asr.errors import ASRError
from asr.lm import build_arpa
from asr.manifest import read_manifest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "recipes" / "english" / "local" / "synthesize.py"
TEXT = ["THE CAT SAT ON THE MAT", "A DOG RAN IN THE PARK", "WE CALL IT A BEAR", "SHE LIKES TO EAT APPLES",
        "THE CAT RAN TO THE DOG", "I SAW A BEAR IN THE PARK"]


@pytest.fixture(scope="module")
def synth():
    """The script imported as a module (it puts its folder on sys.path for build_lm; undone after)."""
    path, modules = list(sys.path), set(sys.modules)
    spec = importlib.util.spec_from_file_location("synthesize_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["synthesize_script"] = module
    spec.loader.exec_module(module)
    yield module
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        sys.modules.pop(name)


@pytest.fixture(scope="module")
def small_lm():
    return parse_arpa(build_arpa(TEXT, order=3), "test text")


def test_sentences_are_distinct_in_length_bounds_and_never_an_excluded_transcript(synth, small_lm):
    excluded = {"THE CAT SAT ON THE MAT", "A DOG RAN IN THE PARK"}
    sentences = synth.choose_sentences(small_lm, 10, excluded, np.random.default_rng(0))
    assert len(sentences) == len(set(sentences)) == 10
    assert not excluded & set(sentences)
    assert all(synth.MIN_WORDS <= len(s.split()) <= synth.MAX_WORDS for s in sentences)
    words = {w for s in TEXT for w in s.split()}
    assert all(set(s.split()) <= words for s in sentences)
    assert sentences == synth.choose_sentences(small_lm, 10, excluded, np.random.default_rng(0))  # seeded


def test_asking_for_more_sentences_than_the_lm_can_give_is_an_error(synth, small_lm, monkeypatch):
    drawn = ["YES PLEASE NOW", "NO", "A <unk> SENTENCE", "THE CAT SAT ON THE MAT"]
    monkeypatch.setattr(synth, "sample_sentences", lambda lm, count, rng, max_words: drawn)
    with pytest.raises(ASRError, match="drew only 1 usable sentences of the 5"):
        synth.choose_sentences(small_lm, 5, {"THE CAT SAT ON THE MAT"}, np.random.default_rng(0))


FULL_MENU = ("kal16", "awb", "rms", "slt"), ("en-us", "en-gb"), ("m1", "f2", "klatt")


def test_voices_come_from_every_engine_on_the_menu_with_pitch_and_rate_in_range(synth):
    rng = np.random.default_rng(1)
    voices = [synth.draw_voice(synth.Menu(*FULL_MENU), rng) for _ in range(300)]
    assert {v.engine for v in voices} == {"flite", "espeak-ng"}
    assert {v.name for v in voices if v.engine == "flite"} == set(FULL_MENU[0])
    assert {v.name for v in voices if v.engine == "espeak-ng"} == {f"{a}+{b}" for a in FULL_MENU[1] for b in FULL_MENU[2]}
    for v in voices:
        if v.engine == "flite":
            assert 85 <= v.pitch <= 260 and 0.85 <= v.rate <= 1.3
            assert v.command("hello", Path("x.wav"))[:3] == ["flite", "-voice", v.name]
        else:
            assert 20 <= v.pitch <= 80 and 125 <= v.rate <= 190
            assert v.command("hello", Path("x.wav"))[:3] == ["espeak-ng", "-v", v.name]
    assert {synth.draw_voice(synth.Menu(flite=("slt",)), rng).speaker for _ in range(5)} == {"synth-flite-slt"}


def test_an_unknown_or_missing_engine_is_named(synth, monkeypatch):
    with pytest.raises(ASRError, match="unknown engine 'festival'"):
        synth.voice_menu(("festival",))
    monkeypatch.setattr(synth.shutil, "which", lambda name: None)
    with pytest.raises(ASRError, match=r"espeak-ng not found on PATH: install it \(apt install espeak-ng\)"):
        synth.voice_menu(("espeak-ng",))


def test_only_voices_the_engines_list_are_used(synth, monkeypatch):
    """flite and espeak-ng speak an unknown voice's name in their default voice without an error."""
    listed = {"flite": {"kal", "slt", "awb"}, "espeak-ng": {"en-us", "en-029", "de", "+m3", "+f5", "+croak"}}
    monkeypatch.setattr(synth.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(synth, "installed_voices", lambda engine: listed[engine])
    menu = synth.voice_menu(("flite", "espeak-ng"))
    assert menu == synth.Menu(("awb", "slt"), ("en-us", "en-029"), ("m3", "f5"))
    assert synth.voice_menu(("espeak-ng",)).engines == ("espeak-ng",)
    listed["espeak-ng"] = {"de", "+m3"}
    with pytest.raises(ASRError, match="espeak-ng here lacks the English voices"):
        synth.voice_menu(("espeak-ng",))
    listed["flite"] = {"kal"}
    with pytest.raises(ASRError, match="flite here has none of the voices kal16, awb, rms, slt"):
        synth.voice_menu(("flite",))


@pytest.mark.parametrize("engine", ["flite", "espeak-ng"])
def test_the_installed_engines_list_the_voices_the_script_wants(synth, engine):
    if shutil.which(engine) is None:
        pytest.skip(f"{engine} is not installed (apt install {engine})")
    have = synth.installed_voices(engine)
    if engine == "flite":
        assert set(synth.FLITE_VOICES) <= have
    else:
        assert set(synth.ESPEAK_VOICES) <= have and {"+" + v for v in synth.ESPEAK_VARIANTS} <= have


def test_a_killed_run_resumes_keeping_the_files_already_written(synth, tmp_path, monkeypatch):
    spoken = []

    def fake_speak(text, voice, wav):
        spoken.append(text)
        sf.write(wav, np.full(8000, 0.1, dtype=np.float32), synth.SAMPLE_RATE, subtype="PCM_16")
        return 0.5

    monkeypatch.setattr(synth, "speak", fake_speak)
    voices = [synth.Voice("flite", "slt", 200.0, 1.0), synth.Voice("espeak-ng", "en-us+f1", 50.0, 150.0)]
    first = synth.synthesize(TEXT[:2], voices, tmp_path, jobs=2)
    assert sorted(spoken) == sorted(TEXT[:2])
    (tmp_path / "wav" / "synth-00001.wav").unlink()
    again = synth.synthesize(TEXT[:2], voices, tmp_path, jobs=1)
    assert spoken[2:] == [TEXT[1]]  # only the missing file is spoken again
    assert again == first
    assert [u.speaker for u in again] == ["synth-flite-slt", "synth-espeak-ng-en-us+f1"]
    assert [u.duration for u in again] == [0.5, 0.5]
    other = [synth.Voice("flite", "awb", 100.0, 1.0), voices[1]]
    with pytest.raises(ASRError, match="plan.json: the folder holds another set of sentences or voices"):
        synth.synthesize(TEXT[:2], other, tmp_path, jobs=1)
    with pytest.raises(ASRError, match="plan.json: the folder holds another set"):
        synth.synthesize(TEXT[:3], voices + [other[0]], tmp_path, jobs=1)
    assert len(spoken) == 3  # nothing spoken into the other plan's folder


@pytest.mark.parametrize("voice", [("flite", "slt", 200.0, 1.0), ("flite", "kal16", 110.0, 1.2),
                                   ("espeak-ng", "en-gb+m3", 50.0, 160.0)])
def test_each_engine_writes_16_khz_speech_of_the_sentence(synth, tmp_path, voice):
    if shutil.which(voice[0]) is None:
        pytest.skip(f"{voice[0]} is not installed (apt install {voice[0]})")
    wav = tmp_path / "one.wav"
    duration = synth.speak("PLEASE CALL STELLA AND ASK HER TO BRING THESE THINGS", synth.Voice(*voice), wav)
    info = sf.info(wav)
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert duration == pytest.approx(info.frames / 16000)
    assert 1.5 < duration < 8.0  # ten words
    samples, _ = sf.read(wav)
    assert 0.3 < np.abs(samples).max() <= 0.98


def test_an_engine_that_fails_or_writes_silence_is_reported_with_the_sentence(synth, tmp_path, monkeypatch):
    import subprocess

    def failing(command, **kwargs):
        return subprocess.CompletedProcess(command, 2, b"", b"warning\nflite: bad things happened\n")

    monkeypatch.setattr(synth.subprocess, "run", failing)
    voice = synth.Voice("flite", "slt", 200.0, 1.0)
    with pytest.raises(ASRError, match=r"^flite failed on 'HELLO THERE' \(exit 2\): flite: bad things happened$"):
        synth.speak("HELLO THERE", voice, tmp_path / "x.wav")

    def silent(command, **kwargs):
        sf.write(command[-1], np.zeros(1600, dtype=np.float32), 8000)
        return subprocess.CompletedProcess(command, 0, b"", b"")

    monkeypatch.setattr(synth.subprocess, "run", silent)
    with pytest.raises(ASRError, match=r"flite \(slt\) wrote silence for 'HELLO THERE'"):
        synth.speak("HELLO THERE", voice, tmp_path / "x.wav")
    assert not (tmp_path / "x.wav").exists()


def test_the_script_writes_a_manifest_the_trainer_reads(synth, tmp_path):
    pytest.importorskip("pocketsphinx", reason="pocketsphinx (pip install 'asr[bench]') ships the LM")
    for engine in synth.ENGINES:
        if shutil.which(engine) is None:
            pytest.skip(f"{engine} is not installed (apt install {engine})")
    import subprocess

    from asr.text import Vocab

    (tmp_path / "train.txt").write_text("\n".join(TEXT) + "\n")
    Vocab.from_texts(["ABCDEFGHIJKLMNOPQRSTUVWXYZ'"]).save(tmp_path / "vocab.json")
    done = subprocess.run([sys.executable, str(SCRIPT), "--out-dir", str(tmp_path / "synth"), "--sentences", "4",
                           "--train-text", str(tmp_path / "train.txt"), "--vocab", str(tmp_path / "vocab.json"),
                           "--vocab-size", "2000"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "4 utterances" in done.stdout
    utterances = read_manifest(tmp_path / "synth" / "synth.jsonl")  # checks every audio file and duration
    assert len(utterances) == 4 and all(u.speaker.startswith("synth-") for u in utterances)
