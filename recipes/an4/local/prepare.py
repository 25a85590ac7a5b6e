"""AN4 (SphinxTrain layout, WAV, FLAC or NIST SPHERE audio) -> train/dev/test JSONL manifests.

    python recipes/an4/local/prepare.py --data-dir ../shared/data/an4 --out-dir exp/an4/data

Expects <data-dir>/etc/an4_{train,test}.{fileids,transcription} and audio at
<data-dir>/wav/<fileid>.wav (the cmusphinx repository), .flac (a compressed copy of it) or .sph
(CMU's an4_sphere.tar.gz).
dev = a few whole training speakers held out (speaker-disjoint from train, like test).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asr.an4 import DEV_SPEAKERS, read_split, split_dev
from asr.errors import ASRError
from asr.manifest import write_manifest

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--out-dir", required=True, type=Path)
    parser.add_argument("--dev-speakers", type=int, default=DEV_SPEAKERS)
    args = parser.parse_args()
    problems, splits = [], {}
    for split in ("train", "test"):  # every problem of both splits in one go
        try:
            splits[split] = read_split(args.data_dir, split)
        except ASRError as err:
            problems.extend(str(err).splitlines())
    if not problems:
        try:
            train, dev = split_dev(splits["train"], args.dev_speakers)
        except ASRError as err:
            problems.append(str(err))
    if problems:
        for problem in problems:
            print(f"prepare.py: error: {problem}", file=sys.stderr)
        print(f"prepare.py: {len(problems)} problem(s), no manifests written", file=sys.stderr)
        return 1
    test = splits["test"]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, utterances in (("train", train), ("dev", dev), ("test", test)):
        write_manifest(args.out_dir / f"{name}.jsonl", utterances)
        seconds = sum(u.duration for u in utterances)
        speakers = len({u.speaker for u in utterances})
        print(f"{name}: {len(utterances)} utterances, {speakers} speakers, {seconds / 3600:.2f} h ({seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
