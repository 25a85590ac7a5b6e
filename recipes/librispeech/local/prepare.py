"""LibriSpeech (the OpenSLR tree of FLAC files) -> one JSONL manifest per subset.

    python recipes/librispeech/local/prepare.py --data-dir /data/LibriSpeech --out-dir exp/librispeech/data \
        --subsets train-clean-100 dev-clean dev-other test-clean test-other

Expects <data-dir>/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac with one
<speaker>-<chapter>.trans.txt per chapter ("<utt-id> TEXT" lines). Durations come from the
file headers (no decoding), read with a few threads.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from asr.audio import audio_info
from asr.manifest import Utterance, write_manifest
from asr.errors import ASRError
from asr.text import normalise_text

SUBSETS = (
    "train-clean-100", "train-clean-360", "train-other-500",
    "dev-clean", "dev-other", "test-clean", "test-other",
)


def read_subset(data_dir: Path, subset: str, threads: int = 8) -> tuple[list[Utterance], list[str]]:
    """Utterances of one subset, sorted by id, and one message per problem found (bad line, missing audio)."""
    root = data_dir / subset
    if not root.is_dir():
        raise ASRError(f"{root}: subset folder not found (is {data_dir} a LibriSpeech folder?)")
    entries, problems = [], []
    for trans in sorted(root.glob("*/*/*.trans.txt")):
        speaker = trans.parent.parent.name
        for number, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            utt_id, _, text = line.strip().partition(" ")
            audio = trans.parent / f"{utt_id}.flac"
            if not text.strip():
                problems.append(f"{trans}:{number}: empty transcript for {utt_id}")
            elif not audio.is_file():
                problems.append(f"{trans}:{number}: audio file not found: {audio}")
            else:
                entries.append((utt_id, audio, normalise_text(text), speaker))
    if not entries and not problems:
        raise ASRError(f"{root}: no *.trans.txt files under <speaker>/<chapter>/")

    def utterance(entry) -> Utterance | str:
        utt_id, audio, text, speaker = entry
        try:
            frames, rate = audio_info(audio)
        except ASRError as err:
            return str(err)
        return Utterance(utt_id, str(audio.resolve()), round(frames / rate, 3), text, speaker)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(utterance, entries))
    problems += [r for r in results if isinstance(r, str)]
    return [r for r in results if isinstance(r, Utterance)], problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, type=Path, help="the LibriSpeech folder (holding the subsets)")
    parser.add_argument("--out-dir", required=True, type=Path)
    parser.add_argument("--subsets", nargs="+", default=list(SUBSETS), choices=SUBSETS)
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for subset in args.subsets:
        try:
            utterances, problems = read_subset(args.data_dir, subset)
        except ASRError as err:
            print(f"prepare.py: error: {err}", file=sys.stderr)
            return 1
        for problem in problems:
            print(f"prepare.py: skipped: {problem}", file=sys.stderr)
        write_manifest(args.out_dir / f"{subset}.jsonl", utterances)
        hours = sum(u.duration for u in utterances) / 3600
        print(f"{subset}: {len(utterances)} utterances, {len({u.speaker for u in utterances})} speakers, {hours:.2f} h")
    return 0


if __name__ == "__main__":
    sys.exit(main())
