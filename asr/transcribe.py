"""Audio files -> text with a trained model, in length-sorted batches.

A file that cannot be read yields a Transcript with `error` set; the others are still transcribed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch

from asr.audio import find_audio_files, load_audio
from asr.checkpoint import LoadedModel
from asr.decode import greedy_decode
from asr.errors import ASRError
from asr.features import log_mel


@dataclass(frozen=True)
class Transcript:
    audio: str  # the path as given (or as found under a given directory)
    text: str = ""
    duration: float = 0.0  # seconds
    error: str | None = None  # one line naming the file and the problem


def expand_inputs(paths: Iterable[str]) -> list[tuple[str, str | None]]:
    """Paths and directories -> (audio path, error or None), in the order given.

    A directory contributes every audio file under it (sorted); a directory with none, or a
    missing path, contributes one entry carrying its error.
    """
    expanded: list[tuple[str, str | None]] = []
    for path in paths:
        if os.path.isdir(path):
            found = find_audio_files(path)
            if not found:
                expanded.append((path, f"{path}: directory contains no audio files"))
            expanded.extend((str(p), None) for p in found)
        elif not os.path.exists(path):
            expanded.append((path, f"{path}: no such file or directory"))
        else:
            expanded.append((path, None))
    return expanded


class Transcriber:
    """Runs a LoadedModel over audio files on a device, `batch_size` files at a time."""

    def __init__(self, loaded: LoadedModel, device: str | torch.device = "cpu", batch_size: int = 16) -> None:
        self.loaded = loaded
        self.device = torch.device(device)
        self.batch_size = batch_size
        loaded.model.to(self.device).eval()

    def features(self, path: str) -> tuple[torch.Tensor, float]:
        """Normalised log-mel feats (T, F) of one file and its duration in seconds."""
        config = self.loaded.features
        samples = load_audio(path, config.sample_rate)
        return self.loaded.cmvn.apply(log_mel(samples, config)), len(samples) / config.sample_rate

    @torch.no_grad()
    def decode_features(self, feats: Sequence[torch.Tensor]) -> list[str]:
        """Greedy transcripts of normalised feats [(T, F)], in one padded batch."""
        padded = torch.nn.utils.rnn.pad_sequence(list(feats), batch_first=True).to(self.device)
        lens = torch.tensor([f.shape[0] for f in feats], device=self.device)
        log_probs, out_lens = self.loaded.model(padded, lens)
        return [self.loaded.vocab.decode(ids) for ids in greedy_decode(log_probs, out_lens)]

    def transcribe(self, inputs: Iterable[tuple[str, str | None]]) -> Iterator[Transcript]:
        """(path, error-or-None) pairs (see expand_inputs) -> Transcripts, in input order."""
        group: list[tuple[str, str | None]] = []
        for item in inputs:
            group.append(item)
            if len(group) == self.batch_size:
                yield from self._transcribe_group(group)
                group = []
        if group:
            yield from self._transcribe_group(group)

    def _transcribe_group(self, group: list[tuple[str, str | None]]) -> list[Transcript]:
        results: list[Transcript | None] = [None] * len(group)
        ready: list[tuple[int, torch.Tensor, float]] = []
        for index, (path, error) in enumerate(group):
            if error is not None:
                results[index] = Transcript(audio=path, error=error)
                continue
            try:
                feats, duration = self.features(path)
            except ASRError as err:
                results[index] = Transcript(audio=path, error=str(err))
                continue
            ready.append((index, feats, duration))
        ready.sort(key=lambda item: item[1].shape[0])
        if ready:
            texts = self.decode_features([feats for _, feats, _ in ready])
            for (index, _, duration), text in zip(ready, texts):
                results[index] = Transcript(audio=group[index][0], text=text, duration=duration)
        return results  # type: ignore[return-value]
