"""The AN4 corpus as it ships (SphinxTrain layout: etc/an4_{train,test}.{fileids,transcription},
audio at wav/<fileid>.wav, .flac or NIST SPHERE .sph) -> utterances, and AN4's dev split (a few
whole training speakers held out). Used by recipes/an4/local/prepare.py and bench/robustness.py.
"""

from __future__ import annotations

import re
from pathlib import Path

from asr.audio import audio_info
from asr.errors import ASRError
from asr.manifest import Utterance
from asr.text import normalise_text

DEV_SPEAKERS = 6  # the AN4 recipe's default dev split (prepare.py --dev-speakers)
AUDIO_SUFFIXES = (".wav", ".flac", ".sph")
_UTTERANCE_ID = re.compile(r"\(([^()]+)\)\s*$")
_SENTENCE_MARKS = re.compile(r"</?s>")


def parse_transcription(line: str, where: str) -> tuple[str, str]:
    """'<s> YES </s> (an251-fash-b)' -> ('an251-fash-b', 'YES')."""
    match = _UTTERANCE_ID.search(line)
    if not match:
        raise ASRError(f"{where}: no '(utterance-id)' at the end of the line")
    text = _SENTENCE_MARKS.sub(" ", line[: match.start()])
    return match.group(1), normalise_text(text)


def find_audio(wav_dir: Path, fileid: str) -> Path:
    for suffix in AUDIO_SUFFIXES:
        candidate = wav_dir / (fileid + suffix)
        if candidate.is_file():
            return candidate
    raise ASRError(f"{wav_dir / fileid}.{{wav,flac,sph}}: audio file not found")


def read_lines(path: Path, problems: list[str]) -> list[tuple[int, str]]:
    """(line number, line) for the non-empty lines of a text file; lines that are not UTF-8 go to problems."""
    try:
        raw_lines = path.read_bytes().splitlines()
    except OSError as err:
        raise ASRError(f"{path}: cannot read ({err.strerror})") from None
    lines = []
    for number, raw in enumerate(raw_lines, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            problems.append(f"{path}:{number}: not valid UTF-8")
            continue
        if line.strip():
            lines.append((number, line.strip()))
    return lines


def read_split(data_dir: Path, split: str) -> list[Utterance]:
    """The utterances of one split. Raises ASRError listing every problem (one per line), not just the first."""
    etc = data_dir / "etc"
    fileids_path, trans_path = etc / f"an4_{split}.fileids", etc / f"an4_{split}.transcription"
    for path in (fileids_path, trans_path):
        if not path.is_file():
            raise ASRError(f"{path}: missing; is {data_dir} an AN4 folder (etc/ and wav/)?")
    problems: list[str] = []
    texts: dict[str, str] = {}
    for number, line in read_lines(trans_path, problems):
        try:
            utt_id, text = parse_transcription(line, f"{trans_path}:{number}")
        except ASRError as err:
            problems.append(str(err))
            continue
        if utt_id in texts:
            problems.append(f"{trans_path}:{number}: second transcription for {utt_id}")
            continue
        texts[utt_id] = text
    utterances, seen = [], set()
    for number, fileid in read_lines(fileids_path, problems):
        utt_id = Path(fileid).name
        if utt_id in seen:
            problems.append(f"{fileids_path}:{number}: {fileid} is listed twice")
            continue
        seen.add(utt_id)
        if utt_id not in texts:
            problems.append(f"{trans_path}: no transcription for {utt_id}")
            continue
        try:
            audio = find_audio(data_dir / "wav", fileid)
            frames, rate = audio_info(audio)
        except ASRError as err:
            problems.append(str(err))
            continue
        if frames == 0:
            problems.append(f"{audio}: contains no audio samples (zero length)")
            continue
        speaker = Path(fileid).parent.name
        utterances.append(Utterance(utt_id, str(audio.resolve()), round(frames / rate, 3), texts[utt_id], speaker))
    if problems:
        raise ASRError("\n".join(problems))
    return utterances


def split_dev(train: list[Utterance], num_speakers: int) -> tuple[list[Utterance], list[Utterance]]:
    """Hold out num_speakers training speakers, evenly spaced in sorted order (deterministic)."""
    speakers = sorted({u.speaker for u in train})
    if not 0 < num_speakers < len(speakers):
        raise ASRError(f"cannot hold out {num_speakers} of {len(speakers)} training speakers for dev")
    step = len(speakers) / num_speakers
    held_out = {speakers[int(step * i + step / 2)] for i in range(num_speakers)}
    return [u for u in train if u.speaker not in held_out], [u for u in train if u.speaker in held_out]
