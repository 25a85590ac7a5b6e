"""AN4 + speechocean762 (+ LibriSpeech manifests when given) -> the general-English recipe's manifests.

    python recipes/english/local/prepare.py --an4 exp/english/data/an4 \
        --speechocean ../shared/data/speechocean762 --out-dir exp/english/data [--weights an4=2,so762=1]

--an4 is a folder of AN4 manifests (train/dev/test.jsonl, from recipes/an4/local/prepare.py).
speechocean762's Kaldi directories are read with the project's own import (asr.corpus, every
problem with its file and line); dev = whole training speakers held out (speaker-disjoint), so
its test speakers reach neither training nor model selection. Writes, in --out-dir:
    train.jsonl             every corpus's train part, mixed with the weights (asr.corpus.mix_corpora)
    dev.jsonl               every corpus's dev part (model selection, LM tuning)
    dev_<corpus>.jsonl, test_<corpus>.jsonl, train_<corpus>.jsonl   per corpus, for scoring
    lm_text.txt             the training transcripts (never dev or test), one a line, for the LM
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asr.corpus import CheckConfig, mix_corpora, read_corpus, shared_speakers, split_by_speaker
from asr.errors import ASRError
from asr.manifest import Utterance, read_manifest, write_manifest

SO762_DEV_FRACTION = 0.1  # 13 of the 125 training speakers


def read_speechocean(root: Path) -> dict[str, list[Utterance]]:
    """speechocean762's train and test directories as utterances (raises ASRError on any problem)."""
    splits = {}
    for split in ("train", "test"):
        corpus = read_corpus(root / split, CheckConfig(audio_root=root))
        if corpus.problems:
            raise ASRError("\n".join(str(p) for p in corpus.problems))
        # speaker ids are numbers: prefix them so they can never collide with another corpus's
        splits[split] = [Utterance(u.id, u.audio, u.duration, u.text, f"so762-{u.speaker}") for u in corpus.utterances]
    return splits


def parse_weights(text: str) -> dict[str, float]:
    weights = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        weights[name.strip()] = float(value)
    return weights


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--an4", required=True, type=Path, help="folder with AN4's train/dev/test.jsonl")
    parser.add_argument("--speechocean", required=True, type=Path, help="the speechocean762 folder")
    parser.add_argument("--librispeech", type=Path, help="optional: a folder with LibriSpeech train/dev/test.jsonl")
    parser.add_argument("--out-dir", required=True, type=Path)
    parser.add_argument("--weights", default="an4=2,so762=1,librispeech=1",
                        help="copies of each corpus's training utterances (default an4=2,so762=1,librispeech=1)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        weights = parse_weights(args.weights)
        corpora: dict[str, dict[str, list[Utterance]]] = {
            "an4": {s: read_manifest(args.an4 / f"{s}.jsonl") for s in ("train", "dev", "test")}}
        so762 = read_speechocean(args.speechocean)
        so_train, so_dev, note = split_by_speaker(so762["train"], SO762_DEV_FRACTION, args.seed)
        print(f"so762: {note}")
        corpora["so762"] = {"train": so_train, "dev": so_dev, "test": so762["test"]}
        if args.librispeech:
            corpora["librispeech"] = {s: read_manifest(args.librispeech / f"{s}.jsonl") for s in ("train", "dev", "test")}
        for name, splits in corpora.items():
            for held_out in ("dev", "test"):
                common = shared_speakers(splits["train"], splits[held_out])
                if common:
                    raise ASRError(f"{name}: {len(common)} speaker(s) in both train and {held_out}: {sorted(common)[:5]}")
    except (ASRError, OSError, ValueError) as err:
        for line in str(err).splitlines():
            print(f"prepare.py: error: {line}", file=sys.stderr)
        return 1
    args.out_dir.mkdir(parents=True, exist_ok=True)
    outputs = {}
    for name, splits in corpora.items():
        for split, utterances in splits.items():
            outputs[f"{split}_{name}"] = utterances
    outputs["train"] = mix_corpora([(s["train"], weights.get(n, 1.0)) for n, s in corpora.items()], args.seed)
    outputs["dev"] = [u for s in corpora.values() for u in s["dev"]]
    for name, utterances in outputs.items():
        write_manifest(args.out_dir / f"{name}.jsonl", utterances)
        seconds = sum(u.duration for u in utterances)
        speakers = len({u.speaker for u in utterances})
        print(f"{name}: {len(utterances)} utterances, {speakers} speakers, {seconds / 3600:.2f} h")
    lm_lines = [u.text for s in corpora.values() for u in s["train"]]
    (args.out_dir / "lm_text.txt").write_text("\n".join(lm_lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
