"""Bring your own corpus: a Kaldi/ESPnet data directory or a CSV/TSV/JSONL table of audio + transcript,
checked the way Kaldi's validate_data_dir.sh checks a data directory, turned into a manifest.

Sources:
    Kaldi/ESPnet data directory: `wav.scp` (`<recording> <path>`), `text` (`<utt> <words...>`),
        optional `segments` (`<utt> <recording> <start s> <end s>`, end -1 = to the end of the file)
        and `utt2spk` (`<utt> <speaker>`). Relative paths are taken from `audio_root` when given, else
        from the current folder (as Kaldi does), else from the data directory, else from the folder
        above it (a corpus root, as releases such as speechocean762 ship them). Pipe entries (`sox ... - |`) and archive offsets
        (`foo.ark:123`) are refused with a message saying how to convert them.
    Table (.csv, .tsv, .jsonl): one utterance per row/line with an audio path and a transcript;
        optional id, speaker, duration, and offset (s) for an utterance cut from a longer file.
        Column names are matched against common spellings (COLUMNS). Relative paths are taken from
        the table's folder.

Every problem is found in one pass and reported with its file and line (a Problem). Problems that
make an utterance unusable (no audio, unreadable audio, no or empty transcript, a bad segment, an
absurd duration, a duplicate id) leave that utterance out; the rest (unsorted files, characters
outside a given vocabulary, a missing speaker) are reported and the utterance is kept.
Utterances cut from longer recordings (segments) are written as their own WAV files by
cut_segments, sample for sample, like ESPnet's format_wav_scp.sh: every later stage then reads
plain files.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from asr.audio import MIN_SECONDS, AudioError, audio_info, read_segment
from asr.errors import ASRError
from asr.manifest import Utterance, duration_mismatch
from asr.text import normalise_text

MIN_DURATION = 0.1  # s: shorter utterances hold no word (and give a CTC model almost no frames)
MAX_DURATION = 60.0  # s: longer ones are rarely single utterances and do not fit training batches
MAX_CHARS_PER_SECOND = 40.0  # fast read speech is ~15 characters/s; far above means text and audio do not match
SEGMENT_OVERSHOOT = 0.5  # s a segment may end past its recording (cut at the end), as Kaldi's extract-segments
TEXT_MODES = ("normalise", "keep")  # normalise: asr.text.normalise_text (English); keep: whitespace only
COLUMNS = {  # manifest field -> column names accepted in a table (lower-case)
    "audio": ("audio", "path", "wav", "file", "filename", "audio_filepath", "audio_path", "wav_path"),
    "text": ("text", "transcript", "transcription", "sentence", "words", "normalized_text"),
    "id": ("id", "utt_id", "utt", "utterance_id", "key", "uttid"),
    "speaker": ("speaker", "spk", "speaker_id", "spk_id", "client_id"),
    "duration": ("duration", "seconds"),
    "offset": ("offset", "start"),
}


class CorpusError(ASRError):
    """A corpus that cannot be read at all (no such folder, no wav.scp, an unknown table format)."""


@dataclass(frozen=True)
class Problem:
    where: str  # "file:line" (or "file")
    message: str
    dropped: bool = True  # the utterance is left out (False: reported, kept)

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(frozen=True)
class Segment:
    """Part of a recording: samples [round(start * rate), round(end * rate)) of `recording`."""

    recording: str  # audio path
    start: float  # seconds
    end: float | None  # seconds; None: to the end of the recording


@dataclass
class Corpus:
    """What a source holds: usable utterances (in source order), the problems found, and for
    utterances cut from longer recordings their segment (by id; their audio is set by cut_segments)."""

    utterances: list[Utterance] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    segments: dict[str, Segment] = field(default_factory=dict)

    @property
    def dropped(self) -> int:
        return sum(1 for p in self.problems if p.dropped)


@dataclass(frozen=True)
class CheckConfig:
    text: str = "normalise"  # see TEXT_MODES
    alphabet: frozenset[str] | None = None  # characters a transcript may use (None: any)
    min_duration: float = MIN_DURATION
    max_duration: float = MAX_DURATION
    max_chars_per_second: float = MAX_CHARS_PER_SECOND
    audio_root: Path | None = None  # relative wav.scp paths are taken from here (default: see the module docstring)


def read_corpus(source: str | os.PathLike, check: CheckConfig = CheckConfig()) -> Corpus:
    """Read and check a data directory or table (see the module docstring); never raises for a bad
    line, only for a source that cannot be read at all (CorpusError)."""
    source = Path(source)
    if check.text not in TEXT_MODES:
        raise CorpusError(f"text mode must be one of {TEXT_MODES}, got {check.text!r}")
    suffix = source.suffix.lower()
    if source.is_dir():
        corpus = _read_data_dir(source, check)
    elif not source.is_file():
        raise CorpusError(f"{source}: no such data directory or table")
    elif suffix in (".jsonl", ".json"):
        corpus = _read_jsonl(source, check)
    elif suffix in (".csv", ".tsv", ".tab", ".txt"):
        corpus = _read_table(source, check, delimiter="," if suffix == ".csv" else "\t")
    else:
        raise CorpusError(f"{source}: unknown corpus format (a Kaldi data directory, or a .csv, .tsv or .jsonl table)")
    corpus.problems.sort(key=_position)
    return corpus


def _position(problem: Problem) -> tuple[str, int]:
    """(file, line) of a problem, for reporting in file order."""
    path, _, line = problem.where.rpartition(":")
    return (path, int(line)) if line.isdigit() else (problem.where, 0)


# --- Kaldi / ESPnet data directories -------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    line: int
    fields: list[str]  # after the key


def _read_kaldi_file(path: Path, problems: list[Problem], min_fields: int, max_fields: int | None = None,
                     rest_is_one: bool = False) -> dict[str, _Entry]:
    """key -> entry of a Kaldi `<key> <fields...>` file, with problems for malformed, duplicate and
    unsorted lines (Kaldi needs `LC_ALL=C sort`: reported, not fatal)."""
    entries: dict[str, _Entry] = {}
    previous, unsorted_reported = None, False
    try:
        raw_lines = path.read_bytes().splitlines()
    except OSError as err:
        raise CorpusError(f"{path}: cannot read ({err.strerror})") from None
    for number, raw in enumerate(raw_lines, start=1):
        where = f"{path}:{number}"
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError:
            problems.append(Problem(where, "not valid UTF-8"))
            continue
        if not line.strip():
            continue
        if rest_is_one:
            parts = line.strip().split(maxsplit=1)
            key, fields = parts[0], parts[1:]
        else:
            key, *fields = line.split()
        if len(fields) < min_fields or (max_fields is not None and len(fields) > max_fields):
            expected = f"{min_fields}" if max_fields == min_fields else f"at least {min_fields}"
            problems.append(Problem(where, f"expected <id> and {expected} field(s), got {line.strip()!r}"))
            continue
        if key in entries:
            problems.append(Problem(where, f"duplicate id {key!r} (first on line {entries[key].line})"))
            continue
        if previous is not None and key.encode() < previous.encode() and not unsorted_reported:
            problems.append(Problem(where, f"not sorted: {key!r} after {previous!r} (Kaldi tools need "
                                    f"`LC_ALL=C sort {path.name}`)", dropped=False))
            unsorted_reported = True
        previous = key
        entries[key] = _Entry(number, fields)
    return entries


def _resolve(path: str, bases: Sequence[Path]) -> Path | None:
    """A Kaldi path: absolute, else the first of `bases` it exists under; None when it is under none."""
    candidate = Path(path)
    if candidate.is_absolute():
        return candidate
    for base in bases:
        try:
            if (base / candidate).exists():
                return Path(os.path.abspath(base / candidate))  # manifests are read from elsewhere
        except OSError:  # a name too long for the file system is not there
            continue
    return None


def _search_folders(folder: Path, check: CheckConfig) -> list[Path]:
    """Where a data directory's relative audio paths are looked for, in order (see the module docstring)."""
    if check.audio_root is not None:
        return [check.audio_root]
    return [Path.cwd(), folder, folder.parent]


def _recording_path(value: str, where: str, bases: Sequence[Path]) -> tuple[Path | None, Problem | None]:
    """The audio file of a wav.scp value, or the problem with it."""
    if value.rstrip().endswith("|"):
        return None, Problem(where, "a command (pipe entry ending in '|'), not a file: run the command once to write "
                             "each recording to a WAV/FLAC file, and list the files in wav.scp")
    parts = value.split()
    if len(parts) > 1:
        return None, Problem(where, f"expected one audio path, got {value!r} (a path with spaces, or a command "
                             "without its '|')")
    path = parts[0]
    if ".ark:" in path or path.endswith(".ark"):
        return None, Problem(where, "a Kaldi archive entry (ark:offset), not an audio file: dump the audio to "
                             "WAV files first (e.g. wav-copy ark:... to one file per recording)")
    resolved = _resolve(path, bases)
    if resolved is None:
        tried = ", ".join(str(b) for b in bases)
        hint = "" if len(bases) == 1 else "; name the folder they are relative to with --audio-root"
        return None, Problem(where, f"{path}: no such file (looked in {tried}{hint})")
    return resolved, None


def _read_data_dir(folder: Path, check: CheckConfig) -> Corpus:
    wav_scp, text_file = folder / "wav.scp", folder / "text"
    missing = [p.name for p in (wav_scp, text_file) if not p.is_file()]
    if missing:
        raise CorpusError(f"{folder}: not a Kaldi/ESPnet data directory (no {' or '.join(missing)}); "
                          "it needs wav.scp and text, and may have segments and utt2spk")
    corpus = Corpus()
    problems = corpus.problems
    recordings_raw = _read_kaldi_file(wav_scp, problems, 1, rest_is_one=True)
    recordings: dict[str, tuple[Path, float, int]] = {}  # id -> (path, seconds, line)
    bases = _search_folders(folder, check)
    for rec_id, entry in recordings_raw.items():
        where = f"{wav_scp}:{entry.line}"
        path, problem = _recording_path(entry.fields[0], where, bases)
        if problem is None:
            seconds, problem = _audio_seconds(path, where)
        if problem is not None:
            problems.append(problem)
            continue
        recordings[rec_id] = (path, seconds, entry.line)

    # utterance id -> (where it is defined, audio path, duration, segment or None)
    utterances: dict[str, tuple[str, Path, float, Segment | None]] = {}
    segments_file = folder / "segments"
    if segments_file.is_file():
        listed = _read_kaldi_file(segments_file, problems, 3, 3)
        for utt_id, entry in listed.items():
            where = f"{segments_file}:{entry.line}"
            rec_id, start_text, end_text = entry.fields
            if rec_id not in recordings:
                reason = "has a problem (see above)" if rec_id in recordings_raw else "is not in wav.scp"
                problems.append(Problem(where, f"recording {rec_id!r} {reason}"))
                continue
            path, rec_seconds, _ = recordings[rec_id]
            segment, problem = _segment(path, rec_seconds, start_text, end_text, where)
            if problem is not None:
                problems.append(problem)
                continue
            end = rec_seconds if segment.end is None else segment.end
            utterances[utt_id] = (where, path, end - segment.start, segment)
        cut_from = {entry.fields[0] for entry in listed.values()}
        for rec_id, (_, _, line) in recordings.items():
            if rec_id not in cut_from:
                problems.append(Problem(f"{wav_scp}:{line}", f"recording {rec_id!r} has no segment in "
                                        f"{segments_file.name}", dropped=False))
        known, listing = set(listed), segments_file.name
    else:
        for rec_id, (path, seconds, line) in recordings.items():
            utterances[rec_id] = (f"{wav_scp}:{line}", path, seconds, None)
        known, listing = set(recordings_raw), wav_scp.name

    texts = _read_kaldi_file(text_file, problems, 0, rest_is_one=True)
    for utt_id, entry in texts.items():
        if utt_id not in known:
            problems.append(Problem(f"{text_file}:{entry.line}", f"transcript of {utt_id!r}, which is not in "
                                    f"{listing}", dropped=False))
    speakers: dict[str, _Entry] = {}
    utt2spk = folder / "utt2spk"
    if utt2spk.is_file():
        speakers = _read_kaldi_file(utt2spk, problems, 1, 1)
        for utt_id, entry in speakers.items():
            if utt_id not in known:
                problems.append(Problem(f"{utt2spk}:{entry.line}", f"speaker of {utt_id!r}, which is not in "
                                        f"{listing}", dropped=False))

    for utt_id, (where, path, seconds, segment) in utterances.items():
        entry = texts.get(utt_id)
        if entry is None:
            problems.append(Problem(where, f"{utt_id!r} has no transcript in {text_file.name}"))
            continue
        text_where = f"{text_file}:{entry.line}"
        speaker = ""
        if speakers:
            if utt_id in speakers:
                speaker = speakers[utt_id].fields[0]
            else:
                problems.append(Problem(where, f"{utt_id!r} has no speaker in {utt2spk.name}", dropped=False))
        utt = _checked(utt_id, str(path), seconds, entry.fields[0] if entry.fields else "", speaker,
                       text_where, where, check, problems)
        if utt is not None:
            corpus.utterances.append(utt)
            if segment is not None:
                corpus.segments[utt_id] = segment
    return corpus


def _audio_seconds(path: Path, where: str) -> tuple[float, Problem | None]:
    try:
        frames, rate = audio_info(path)
    except AudioError as err:
        return 0.0, Problem(where, str(err))
    if frames == 0:
        return 0.0, Problem(where, f"{path}: contains no audio samples (zero length)")
    return frames / rate, None


def _segment(path: Path, rec_seconds: float, start_text: str, end_text: str, where: str
             ) -> tuple[Segment | None, Problem | None]:
    try:
        start, end = float(start_text), float(end_text)
    except ValueError:
        return None, Problem(where, f"start and end must be seconds, got {start_text!r} {end_text!r}")
    if not (math.isfinite(start) and math.isfinite(end)) or start < 0:
        return None, Problem(where, f"start must be >= 0 and both finite, got {start_text} {end_text}")
    if end == -1:  # Kaldi: to the end of the recording
        end_or_none = None
    elif end <= start:
        return None, Problem(where, f"end {end_text} is not after start {start_text}")
    elif end > rec_seconds + SEGMENT_OVERSHOOT:
        return None, Problem(where, f"ends at {end:g} s, past the end of {path} ({rec_seconds:.2f} s)")
    else:
        end_or_none = min(end, rec_seconds)
    if start >= rec_seconds:
        return None, Problem(where, f"starts at {start:g} s, past the end of {path} ({rec_seconds:.2f} s)")
    return Segment(str(path), start, end_or_none), None


def _checked(utt_id: str, audio: str, seconds: float, raw_text: str, speaker: str, text_where: str,
             audio_where: str, check: CheckConfig, problems: list[Problem]) -> Utterance | None:
    """The utterance, or None after adding the problem that makes it unusable (kept problems are added too)."""
    text = normalise_text(raw_text) if check.text == "normalise" else " ".join(raw_text.split())
    if not text:
        said = f" ({raw_text.strip()!r} normalises to nothing)" if raw_text.strip() else ""
        problems.append(Problem(text_where, f"{utt_id!r}: empty transcript{said}"))
        return None
    if seconds < max(check.min_duration, MIN_SECONDS):
        problems.append(Problem(audio_where, f"{utt_id!r}: {seconds:.3f} s is too short (under {check.min_duration:g} s)"))
        return None
    if seconds > check.max_duration:
        problems.append(Problem(audio_where, f"{utt_id!r}: {seconds:.1f} s is too long for one utterance (over "
                                f"{check.max_duration:g} s; cut it with a segments file, or raise the limit)"))
        return None
    rate = len(text) / seconds
    if rate > check.max_chars_per_second:
        problems.append(Problem(text_where, f"{utt_id!r}: {len(text)} characters in {seconds:.2f} s of audio "
                                f"({rate:.0f}/s, over {check.max_chars_per_second:g}/s): transcript and audio "
                                "do not match"))
        return None
    if check.alphabet is not None:
        unknown = sorted({c for c in text if c not in check.alphabet})
        if unknown:
            problems.append(Problem(text_where, f"{utt_id!r}: characters outside the vocabulary {unknown}",
                                    dropped=False))
    return Utterance(utt_id, audio, round(seconds, 3), text, speaker)


# --- tables: CSV, TSV, JSONL ---------------------------------------------------------------------


def _read_jsonl(path: Path, check: CheckConfig) -> Corpus:
    rows: list[tuple[int, dict]] = []
    problems: list[Problem] = []
    try:
        raw_lines = path.read_bytes().splitlines()
    except OSError as err:
        raise CorpusError(f"{path}: cannot read ({err.strerror})") from None
    for number, raw in enumerate(raw_lines, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8-sig" if number == 1 else "utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            problems.append(Problem(f"{path}:{number}", f"not a JSON object ({err})"))
            continue
        if not isinstance(record, dict):
            problems.append(Problem(f"{path}:{number}", "not a JSON object"))
            continue
        rows.append((number, {str(k).lower(): v for k, v in record.items()}))
    return _read_rows(path, rows, problems, check)


def _read_table(path: Path, check: CheckConfig, delimiter: str) -> Corpus:
    try:  # bytes that are not UTF-8 kept as lone surrogates: in a file name they are its bytes (os.fsencode)
        with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
            reader = csv.reader(f, delimiter=delimiter)
            lines = [(reader.line_num, row) for row in reader]
    except (OSError, csv.Error) as err:
        raise CorpusError(f"{path}: cannot read as {'CSV' if delimiter == ',' else 'TSV'} ({err})") from None
    lines = [(n, row) for n, row in lines if any(cell.strip() for cell in row)]
    if not lines:
        raise CorpusError(f"{path}: empty table")
    header = [cell.strip().lower() for cell in lines[0][1]]
    audio_column = _columns(path, header)["audio"]  # a table without audio or text columns fails as a whole
    problems: list[Problem] = []
    rows = []
    for number, row in lines[1:]:
        if len(row) != len(header):
            problems.append(Problem(f"{path}:{number}", f"{len(row)} columns, the header has {len(header)}"))
            continue
        record = dict(zip(header, row))
        not_utf8 = [name for name, cell in record.items() if name != audio_column and _has_undecodable(cell)]
        if not_utf8:
            problems.append(Problem(f"{path}:{number}", f"not valid UTF-8 (column {not_utf8[0]!r})"))
            continue
        rows.append((number, record))
    return _read_rows(path, rows, problems, check)


def _has_undecodable(text: str) -> bool:
    """Whether text holds a byte that was not UTF-8 (decoded with errors="surrogateescape")."""
    return any("\udc80" <= char <= "\udcff" for char in text)


def _columns(path: Path, names: Sequence[str]) -> dict[str, str]:
    """manifest field -> the table's column name for it; audio and text are required."""
    found = {}
    for key, aliases in COLUMNS.items():
        name = next((a for a in aliases if a in names), None)
        if name is not None:
            found[key] = name
    missing = [k for k in ("audio", "text") if k not in found]
    if missing:
        wanted = "; ".join(f"{k}: one of {', '.join(COLUMNS[k])}" for k in missing)
        raise CorpusError(f"{path}: no {' or '.join(missing)} column (columns are {', '.join(names)}; {wanted})")
    return found


def _read_rows(path: Path, rows: list[tuple[int, dict]], problems: list[Problem], check: CheckConfig) -> Corpus:
    corpus = Corpus(problems=problems)
    if not rows:
        return corpus
    columns = _columns(path, sorted({k for _, r in rows for k in r}))
    seen: dict[str, int] = {}
    for number, row in rows:
        where = f"{path}:{number}"
        audio_value, raw_text = row.get(columns["audio"]), row.get(columns["text"])
        if not isinstance(audio_value, str) or not audio_value.strip():
            problems.append(Problem(where, f"no audio path in column {columns['audio']!r}"))
            continue
        if raw_text is None or not isinstance(raw_text, str):
            problems.append(Problem(where, f"no transcript in column {columns['text']!r}"))
            continue
        audio = Path(audio_value.strip())
        audio = audio if audio.is_absolute() else path.parent / audio
        utt_id = str(row.get(columns.get("id", ""), "") or "").strip() or audio.stem
        if any(c.isspace() for c in utt_id):
            problems.append(Problem(where, f"id {utt_id!r} contains whitespace"))
            continue
        if utt_id in seen:
            problems.append(Problem(where, f"duplicate id {utt_id!r} (first on line {seen[utt_id]})"))
            continue
        seen[utt_id] = number
        file_seconds, problem = _audio_seconds(audio, where)
        if problem is not None:
            problems.append(problem)
            continue
        numbers = {}
        for key in ("offset", "duration"):
            value = row.get(columns.get(key, ""), "")
            if value in ("", None):
                continue
            try:
                numbers[key] = float(value)
                if not math.isfinite(numbers[key]) or numbers[key] < 0:
                    raise ValueError
            except (TypeError, ValueError):
                problems.append(Problem(where, f"{key} must be a number of seconds >= 0, got {value!r}"))
                break
        else:
            segment = None
            seconds = file_seconds
            if "offset" in numbers:
                end = numbers["offset"] + numbers["duration"] if "duration" in numbers else -1
                segment, problem = _segment(audio, file_seconds, str(numbers["offset"]), str(end), where)
                if problem is not None:
                    problems.append(problem)
                    continue
                seconds = (file_seconds if segment.end is None else segment.end) - segment.start
            elif "duration" in numbers and (mismatch := duration_mismatch(numbers["duration"], file_seconds)):
                problems.append(Problem(where, f"{utt_id!r}: duration {mismatch}; the audio's is used", dropped=False))
            speaker = str(row.get(columns.get("speaker", ""), "") or "").strip()
            utt = _checked(utt_id, str(audio), seconds, raw_text, speaker, where, where, check, problems)
            if utt is not None:
                corpus.utterances.append(utt)
                if segment is not None:
                    corpus.segments[utt_id] = segment
    return corpus


# --- after reading -------------------------------------------------------------------------------


def cut_segments(corpus: Corpus, out_dir: str | os.PathLike, report: Callable[[int], None] | None = None
                 ) -> list[Utterance]:
    """Write every segment utterance's samples to out_dir/<id>.wav (the source's rate, channels and
    sample format where WAV holds it, else 32-bit float) and return the utterances with their audio
    pointing there; the others are returned unchanged. `report(n)` is called after each file."""
    out = Path(out_dir)
    if corpus.segments:
        out.mkdir(parents=True, exist_ok=True)
    import soundfile as sf

    result = []
    for utt in corpus.utterances:
        segment = corpus.segments.get(utt.id)
        if segment is None:
            result.append(utt)
            continue
        samples, rate, subtype = read_segment(segment.recording, segment.start, segment.end)
        target = out / f"{utt.id}.wav"
        if not sf.check_format("WAV", subtype):
            subtype = "FLOAT"
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        sf.write(tmp, samples, rate, subtype=subtype, format="WAV")
        os.replace(tmp, target)
        result.append(replace(utt, audio=str(target.resolve()), duration=round(len(samples) / rate, 3)))
        if report is not None:
            report(1)
    return result


def split_by_speaker(utterances: Sequence[Utterance], dev_fraction: float, seed: int = 0
                     ) -> tuple[list[Utterance], list[Utterance], str]:
    """Hold out whole speakers (drawn with `seed`) until dev has at least dev_fraction of the
    utterances. Returns (train, dev, a note on how it was split). Utterances with no speaker
    count as a speaker each; with fewer than two speakers the split is by utterance."""
    if not 0 < dev_fraction < 1:
        raise ASRError(f"dev fraction must be between 0 and 1, got {dev_fraction:g}")
    groups: dict[str, list[int]] = {}
    for index, utt in enumerate(utterances):
        groups.setdefault(utt.speaker or f"\0{utt.id}", []).append(index)
    named = sum(1 for key in groups if not key.startswith("\0"))
    if len(utterances) < 2:
        raise ASRError(f"cannot split {len(utterances)} utterance(s) into train and dev")
    if named < 2:
        groups = {f"\0{u.id}": [i] for i, u in enumerate(utterances)}
        note = "fewer than two speakers: dev drawn by utterance (not speaker-disjoint)"
    else:
        note = "speaker-disjoint"
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    wanted = max(1, math.ceil(dev_fraction * len(utterances)))
    dev_indices: set[int] = set()
    held = 0
    for key in keys[:-1]:  # at least one group stays in train
        if len(dev_indices) >= wanted:
            break
        dev_indices.update(groups[key])
        held += 1
    train = [u for i, u in enumerate(utterances) if i not in dev_indices]
    dev = [u for i, u in enumerate(utterances) if i in dev_indices]
    unit = "speaker(s)" if note == "speaker-disjoint" else "utterance(s)"
    return train, dev, f"{held} {unit} held out for dev ({len(dev)} utterances, {note})"


def mix_corpora(parts: Sequence[tuple[Sequence[Utterance], float]], seed: int = 0) -> list[Utterance]:
    """One training set from several corpora, each weighted: an utterance of a corpus with weight w
    appears floor(w) times, and once more with probability frac(w) (drawn with `seed`); a weight
    under 1 subsamples the corpus. Copies get ids `<id>~2`, `<id>~3`, ... (ids stay unique; the
    audio and text are the same, and augmentation makes each copy sound different).
    Raises ASRError for a negative or non-finite weight or an id found in two corpora."""
    rng = random.Random(seed)
    seen: set[str] = set()
    mixed: list[Utterance] = []
    for number, (utterances, weight) in enumerate(parts, start=1):
        if not math.isfinite(weight) or weight < 0:
            raise ASRError(f"corpus {number}: weight must be a finite number >= 0, got {weight!r}")
        for utt in utterances:
            if utt.id in seen:
                raise ASRError(f"utterance id {utt.id!r} is in two of the corpora being mixed: give them distinct ids")
            seen.add(utt.id)
            copies = math.floor(weight) + (1 if rng.random() < weight - math.floor(weight) else 0)
            mixed.extend(utt if copy == 1 else replace(utt, id=f"{utt.id}~{copy}") for copy in range(1, copies + 1))
    return mixed


def shared_speakers(first: Sequence[Utterance], second: Sequence[Utterance]) -> set[str]:
    """The speakers (non-empty speaker fields) that two sets of utterances have in common: a split
    meant to be speaker-disjoint (train against dev or test) must give the empty set."""
    return {u.speaker for u in first if u.speaker} & {u.speaker for u in second if u.speaker}
