"""Manifests and transcript files: read (validated, every problem reported at once) and write.

A manifest is JSON Lines, one utterance per line:
    {"id": "an251-fash-b", "audio": "/data/an4/wav/an4_clstk/fash/an251-fash-b.wav",
     "duration": 1.2, "text": "YES", "speaker": "fash"}
Relative audio paths are resolved against the manifest's folder. Transcript files (references
and hypotheses for scoring) are JSONL with id and text, or Kaldi-style `id word word ...` lines.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from asr.atomic import atomic_write
from asr.errors import ASRError

REQUIRED_FIELDS = {"id": str, "audio": str, "duration": (int, float), "text": str}


class ManifestError(ASRError):
    """A manifest with bad lines; the message has one line per problem: file:line: what."""


@dataclass(frozen=True)
class Utterance:
    id: str
    audio: str
    duration: float  # seconds
    text: str
    speaker: str = ""


def read_manifest(path: str | os.PathLike, check_audio: bool = True) -> list[Utterance]:
    """Read and validate a JSONL manifest, reporting every bad line at once.

    Raises:
        ManifestError: listing each malformed line, missing/mistyped field, duplicate id,
            non-positive duration and (with check_audio) missing audio file.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ManifestError(f"{path}: cannot read manifest ({err.strerror})") from None
    base = path.parent
    problems: list[str] = []
    utterances: list[Utterance] = []
    seen: dict[str, int] = {}
    for number, line_bytes in enumerate(raw.splitlines(), start=1):
        where = f"{path}:{number}"
        try:
            line = line_bytes.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError:
            problems.append(f"{where}: not valid UTF-8")
            continue
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            problems.append(f"{where}: malformed JSON ({err.msg})")
            continue
        if not isinstance(record, dict):
            problems.append(f"{where}: expected a JSON object")
            continue
        bad = _field_problems(record)
        if bad:
            problems.append(f"{where}: {bad}")
            continue
        utt_id = record["id"]
        if utt_id in seen:
            problems.append(f"{where}: duplicate id {utt_id!r} (first on line {seen[utt_id]})")
            continue
        duration = float(record["duration"])
        if not math.isfinite(duration) or duration <= 0:
            problems.append(f"{where}: duration must be a positive number of seconds, got {record['duration']!r}")
            continue
        audio = record["audio"]
        if not os.path.isabs(audio):
            audio = str(base / audio)
        if check_audio and not os.path.isfile(audio):
            problems.append(f"{where}: audio file not found: {audio}")
            continue
        seen[utt_id] = number
        utterances.append(
            Utterance(id=utt_id, audio=audio, duration=duration, text=record["text"], speaker=str(record.get("speaker", "")))
        )
    if problems:
        raise ManifestError("\n".join(problems))
    if not utterances:
        raise ManifestError(f"{path}: manifest has no utterances")
    return utterances


def duration_mismatch(stated: float, actual: float) -> str | None:
    """A message when a manifest's duration (s) is more than 10% and 0.1 s off the audio's, else None."""
    if abs(stated - actual) <= max(0.1, 0.1 * actual):
        return None
    return f"manifest says {stated:.2f} s, the audio has {actual:.2f} s"


def _field_problems(record: dict) -> str:
    missing = [k for k in REQUIRED_FIELDS if k not in record]
    if missing:
        return f"missing field(s) {', '.join(missing)}"
    for key, kind in REQUIRED_FIELDS.items():
        if not isinstance(record[key], kind) or isinstance(record[key], bool):
            return f"field {key!r} has the wrong type ({type(record[key]).__name__})"
    if not record["id"]:
        return "empty id"
    return ""


def write_manifest(path: str | os.PathLike, utterances: Sequence[Utterance]) -> None:
    """Write utterances as JSONL (atomically: a temp file renamed into place). An audio path that is
    not valid UTF-8 (held as lone surrogates) is written in JSON's \\udcNN escapes, which read back
    to the same file name."""
    with atomic_write(path) as f:
        for utt in utterances:
            line = json.dumps(asdict(utt), ensure_ascii=False)
            if not line.isprintable():
                line = json.dumps(asdict(utt))
            f.write(line + "\n")


def transcript_id(name: str) -> str:
    """The id of a transcript named by its audio file (what `asr transcribe` writes): the file's name
    without folder and extension, as a corpus's manifest names it (an406-fcaw-b.wav -> an406-fcaw-b);
    any other name is the id itself."""
    from asr.audio import AUDIO_EXTENSIONS

    return Path(name).stem if name.lower().endswith(AUDIO_EXTENSIONS) else name


def read_transcripts(path: str | os.PathLike) -> dict[str, str]:
    """id -> text from a JSONL file ({"id", "text"} per line) or a Kaldi-style text file (`id word word ...`);
    "-" reads standard input.

    The format is detected from the first non-empty line. What `asr transcribe` prints reads too:
    JSONL records without an id take it from their "audio" path, and `path<TAB>text` lines from the
    path (transcript_id). Raises ManifestError listing bad lines.
    """
    path = Path(path)
    try:
        raw_lines = (sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()).splitlines()
    except OSError as err:
        raise ManifestError(f"{path}: cannot read ({err.strerror})") from None
    lines: list[str] = []
    problems: list[str] = []
    for number, raw in enumerate(raw_lines, start=1):
        try:
            lines.append(raw.decode("utf-8-sig" if number == 1 else "utf-8"))
        except UnicodeDecodeError:
            problems.append(f"{path}:{number}: not valid UTF-8")
            lines.append("")
    first = next((line.strip() for line in lines if line.strip()), "")
    is_jsonl = first.startswith("{")
    transcripts: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if is_jsonl:
            try:
                record = json.loads(line)
                utt_id = record["id"] if "id" in record or "audio" not in record else transcript_id(record["audio"])
                text = record["text"]
                if not isinstance(utt_id, str) or not isinstance(text, str):
                    raise TypeError
            except (json.JSONDecodeError, KeyError, TypeError):
                problems.append(f"{path}:{number}: expected a JSON object with string fields 'id' (or 'audio') and 'text'")
                continue
        elif "\t" in line:  # `asr transcribe`'s path<TAB>text (a path may hold spaces)
            name, _, text = line.partition("\t")
            utt_id = transcript_id(name)
        else:
            parts = line.split(maxsplit=1)
            utt_id, text = parts[0], parts[1] if len(parts) > 1 else ""
        if utt_id in transcripts:
            problems.append(f"{path}:{number}: duplicate id {utt_id!r}")
            continue
        transcripts[utt_id] = " ".join(text.split())
    if problems:
        raise ManifestError("\n".join(problems))
    return transcripts


def read_speakers(path: str | os.PathLike) -> dict[str, str]:
    """id -> speaker from a JSONL file whose records have a "speaker" field; {} for other files."""
    speakers: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8-sig") as f:
            for line in f:
                if not line.lstrip().startswith("{"):
                    return {}
                record = json.loads(line)
                if isinstance(record, dict) and record.get("speaker") and "id" in record:
                    speakers[str(record["id"])] = str(record["speaker"])
    except (OSError, ValueError):
        return {}
    return speakers
