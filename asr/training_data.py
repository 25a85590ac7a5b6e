"""A manifest -> the dataset the trainer reads: audio read (or checked) once, and every utterance
that cannot be trained on dropped with a line saying why.

    train_set = training_dataset(config.data.train_manifest, config, vocab, cmvn, model.output_lengths,
                                 say=print, speeds=(1.0, 0.9, 1.1), training=True)

Three ways to hold the audio (`read_split`), chosen by the config:
    train.cache_features, no waveform augmentation  features of every speed, computed now, in memory
    train.cache_features, waveform augmentation     waveforms of every speed in memory; features per item
    no cache                                        audio headers checked now; everything per batch
Then `trainable` keeps what the vocabulary can spell and CTC can align in the audio's frames.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from asr.data import (
    AudioDataset,
    FeatureDataset,
    check_audio_headers,
    compute_speed_variants,
    load_speed_variants,
)
from asr.errors import ASRError
from asr.frontend import Cmvn, FrontEnd
from asr.manifest import Utterance, duration_mismatch, read_manifest
from asr.runconfig import RunConfig
from asr.text import Vocab


class DataError(ASRError):
    """A manifest that leaves nothing to train or evaluate on."""


def ctc_min_frames(tokens: list[int]) -> int:
    """Fewest CTC output frames that can emit `tokens`: one per token plus a blank between repeats."""
    return len(tokens) + sum(1 for a, b in zip(tokens, tokens[1:]) if a == b)


@dataclass
class ReadSplit:
    """A manifest's readable utterances and what was read of them; failures: one line per unreadable one."""

    utterances: list[Utterance]
    failures: list[str]
    shortest_frames: list[int]  # input frames of each utterance at its fastest speed
    actual_seconds: list[float] | None  # measured durations (None when only headers were read)
    feats: list[list[np.ndarray]] | None = None  # per utterance, one (T, F) per speed
    waveforms: list[list[np.ndarray]] | None = None  # per utterance, one waveform per speed


def read_split(utterances: list[Utterance], config: RunConfig, speeds: tuple[float, ...], augmented: bool,
               progress: bool) -> ReadSplit:
    """Read the audio the way the config holds it (see the module docstring)."""
    features, rate = config.features, config.features.sample_rate
    if config.train.cache_features and not augmented:
        kept, feats, failures = compute_speed_variants(utterances, features, speeds, progress)
        return ReadSplit(kept, failures, [min(v.shape[0] for v in f) for f in feats],
                         [(f[0].shape[0] - 1) * features.hop_ms / 1000 * speeds[0] for f in feats], feats=feats)
    if config.train.cache_features:
        kept, waveforms, failures = load_speed_variants(utterances, rate, speeds, progress)
        return ReadSplit(kept, failures, [min(features.num_frames(len(w)) for w in v) for v in waveforms],
                         [len(v[0]) / rate * speeds[0] for v in waveforms], waveforms=waveforms)
    kept, failures = check_audio_headers(utterances)
    return ReadSplit(kept, failures, [features.num_frames(round(u.duration * rate / max(speeds))) for u in kept], None)


def trainable(read: ReadSplit, vocab: Vocab, output_frames: Callable[[torch.Tensor], torch.Tensor],
              where: str, say: Callable[[str], None]) -> list[int]:
    """Indices of the utterances the vocabulary can spell and CTC can align in their output frames;
    each one dropped is said, naming `where` (the manifest)."""
    keep = []
    for index, (utt, frames) in enumerate(zip(read.utterances, read.shortest_frames)):
        unknown = vocab.unknown_chars(utt.text)
        if unknown:
            say(f"skipped {utt.id} ({where}): characters not in the vocabulary {sorted(unknown)}")
            continue
        out_frames = int(output_frames(torch.tensor([frames])))
        needed = ctc_min_frames(vocab.encode(utt.text))
        if needed > out_frames:
            say(f"skipped {utt.id} ({where}): transcript needs {needed} CTC frames, audio gives {out_frames}")
            continue
        keep.append(index)
    return keep


def training_dataset(
    manifest: str,
    config: RunConfig,
    vocab: Vocab,
    cmvn: Cmvn,
    output_frames: Callable[[torch.Tensor], torch.Tensor],
    say: Callable[[str], None],
    speeds: tuple[float, ...] = (1.0,),
    progress: bool = True,
    training: bool = False,
) -> FeatureDataset:
    """Read a manifest and build its dataset, dropping (and reporting each) what cannot be trained on.

    output_frames: the model's output lengths for input lengths (AcousticModel.output_lengths).
    training: SpecAugment and the waveform augmentation of config.augment (when enabled) apply.
    """
    augment = config.augment if training and config.augment.enabled else None
    read = read_split(read_manifest(manifest), config, speeds, augment is not None, progress)
    for failure in read.failures:
        say(f"skipped {failure}")
    for utt, seconds in zip(read.utterances, read.actual_seconds or []):  # the manifest's duration is only a hint
        mismatch = duration_mismatch(utt.duration, seconds)
        if mismatch:
            say(f"warning: {utt.id} ({manifest}): {mismatch}")
    keep = trainable(read, vocab, output_frames, manifest, say)
    dropped = len(read.utterances) + len(read.failures) - len(keep)
    if dropped:
        say(f"{manifest}: {dropped} utterance(s) skipped, {len(keep)} kept")
    if not keep:
        raise DataError(f"{manifest}: no usable utterances")
    kept = [read.utterances[i] for i in keep]
    empty = sum(1 for u in kept if not u.text)
    if empty:
        say(f"{manifest}: {empty} utterance(s) with an empty transcript, kept (CTC target: all blank)")
    specaugment = config.specaugment if training else None
    if read.feats is not None:
        dataset = FeatureDataset(kept, [read.feats[i] for i in keep], vocab, cmvn, specaugment, seed=config.train.seed)
    else:
        dataset = AudioDataset(
            kept, FrontEnd(config.features, cmvn), vocab, specaugment, seed=config.train.seed, speeds=speeds,
            augment=augment, waveforms=None if read.waveforms is None else [read.waveforms[i] for i in keep],
        )
    if training and config.train.consistency_weight > 0:
        dataset.views = 2  # two SpecAugment views of every utterance (consistency training)
    return dataset
