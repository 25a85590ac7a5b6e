"""Training data: features of manifest utterances, the datasets, the length-bucketing batch
sampler and collation into padded batches (manifests themselves: asr.manifest).
"""

from __future__ import annotations

import random
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from tqdm import tqdm

from asr.audio import audio_info, change_speed, load_audio
from asr.augment import AugmentConfig, Augmenter
from asr.errors import ASRError
from asr.frontend import Cmvn, FeatureConfig, FrontEnd
from asr.manifest import Utterance
from asr.specaugment import SpecAugmentConfig, spec_augment
from asr.text import Vocab


def compute_features(
    utterances: Sequence[Utterance], config: FeatureConfig, progress: bool = False
) -> tuple[list[Utterance], list[torch.Tensor], list[str]]:
    """Load audio and compute the front end's features before CMVN (what CMVN stats are made of).

    Returns (kept utterances, their feats (T, F), one message per utterance that failed).
    A bad file never stops the others.
    """
    kept, variants, failures = compute_speed_variants(utterances, config, (1.0,), progress)
    return kept, [v[0] for v in variants], failures


def compute_speed_variants(
    utterances: Sequence[Utterance], config: FeatureConfig, speeds: Sequence[float], progress: bool = False
) -> tuple[list[Utterance], list[tuple[torch.Tensor, ...]], list[str]]:
    """Like compute_features, with one feats (T, F) (before CMVN) per speed factor for each utterance."""
    front_end = FrontEnd(config)
    kept, waveforms, failures = load_speed_variants(utterances, config.sample_rate, speeds, progress)
    return kept, [tuple(torch.from_numpy(front_end(w)) for w in variants) for variants in waveforms], failures


def load_speed_variants(
    utterances: Sequence[Utterance], sample_rate: int, speeds: Sequence[float], progress: bool = False
) -> tuple[list[Utterance], list[tuple[np.ndarray, ...]], list[str]]:
    """Every utterance's samples (N,) at sample_rate, once per speed factor (speed-perturbed).

    Returns (kept utterances, their waveforms, one message per utterance that failed).
    """
    kept, variants, failures = [], [], []
    for utt in tqdm(utterances, desc="audio", disable=not (progress and sys.stderr.isatty()), unit="utt", leave=False):
        try:
            samples = load_audio(utt.audio, sample_rate)
            variants.append(tuple(change_speed(samples, s, sample_rate) for s in speeds))
            kept.append(utt)
        except ASRError as err:
            failures.append(f"{utt.id}: {err}")
    return kept, variants, failures


def check_audio_headers(
    utterances: Sequence[Utterance], threads: int = 8
) -> tuple[list[Utterance], list[str]]:
    """Read every file's header (not its samples): (readable utterances, one message per bad file)."""
    from concurrent.futures import ThreadPoolExecutor

    def problem(utt: Utterance) -> str | None:
        try:
            frames, _ = audio_info(utt.audio)
        except ASRError as err:
            return f"{utt.id}: {err}"
        return f"{utt.id}: {utt.audio}: contains no audio samples (zero length)" if frames == 0 else None

    with ThreadPoolExecutor(max_workers=threads) as pool:
        problems = list(pool.map(problem, utterances))
    return [u for u, p in zip(utterances, problems) if p is None], [p for p in problems if p is not None]


@dataclass
class Batch:
    """A padded batch: feats (B, T, F), feat_lens (B,), tokens (B, U), token_lens (B,), ids [B].

    views > 1: the batch holds `views` differently augmented copies of B / views utterances, view
    by view (rows i, i + B / views, ... are the same utterance; see consistency training in asr.train).
    """

    feats: torch.Tensor
    feat_lens: torch.Tensor
    tokens: torch.Tensor
    token_lens: torch.Tensor
    ids: list[str]
    views: int = 1

    def pin_memory(self) -> Batch:
        """The batch in page-locked memory (DataLoader(pin_memory=True) calls this), so that the
        copy to a GPU with non_blocking=True really overlaps."""
        return Batch(self.feats.pin_memory(), self.feat_lens.pin_memory(), self.tokens.pin_memory(),
                     self.token_lens.pin_memory(), self.ids, self.views)

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.feats.to(device, non_blocking=True),
            self.feat_lens.to(device),
            self.tokens.to(device),
            self.token_lens.to(device),
            self.ids,
            self.views,
        )


class FeatureDataset(torch.utils.data.Dataset):
    """Normalised (and, for training, SpecAugmented) features held in memory, with their token ids.

    `feats` holds one (T, F) tensor per utterance, or a tuple of speed-perturbed variants (see
    compute_speed_variants): each epoch every utterance uses one variant. The variant and the
    SpecAugment masks are drawn from a seed of (seed, epoch, index), so an epoch's batches are
    reproducible after a resume. epoch_num_frames(epoch) gives the lengths of the variants an
    epoch uses (what the sampler batches by). views = 2 (consistency training) makes an item two
    SpecAugment views of the same features, feats (2, T, F); the first is the one views = 1 gives.
    """

    def __init__(
        self,
        utterances: Sequence[Utterance],
        feats: Sequence[torch.Tensor | Sequence[torch.Tensor]],
        vocab: Vocab,
        cmvn: Cmvn,
        specaugment: SpecAugmentConfig | None = None,
        seed: int = 0,
    ) -> None:
        self.utterances = list(utterances)
        self.variants = [
            (cmvn.apply(f),) if isinstance(f, torch.Tensor) else tuple(cmvn.apply(v) for v in f) for f in feats
        ]
        self.tokens = [torch.tensor(vocab.encode(u.text), dtype=torch.long) for u in self.utterances]
        self.specaugment = specaugment if specaugment is not None and specaugment.enabled else None
        self.seed = seed
        self.epoch = 0
        self.views = 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def num_frames(self) -> list[int]:
        """Frames of each utterance at its first speed (1.0)."""
        return [v[0].shape[0] for v in self.variants]

    def epoch_num_frames(self, epoch: int) -> list[int]:
        """Frames of each utterance in the speed variant `epoch` uses."""
        return [self.variants[i][self.variant_index(i, epoch)].shape[0] for i in range(len(self))]

    def variant_count(self, index: int) -> int:
        return len(self.variants[index])

    def variant_index(self, index: int, epoch: int) -> int:
        """Which speed variant utterance `index` uses in `epoch` (drawn from the item's seed)."""
        count = self.variant_count(index)
        return random.Random(self.item_seed(index, epoch)).randrange(count) if count > 1 else 0

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, index: int) -> tuple[str, torch.Tensor, torch.Tensor]:
        seed = self.item_seed(index, self.epoch)
        feats = self.features(index, self.variant_index(index, self.epoch), seed)
        if self.specaugment is not None:
            views = [spec_augment(feats, self.specaugment, seed=view_seed(seed, v)) for v in range(self.views)]
        else:
            views = [feats] * self.views
        return self.utterances[index].id, views[0] if self.views == 1 else torch.stack(views), self.tokens[index]

    def features(self, index: int, variant: int, seed: int) -> torch.Tensor:
        """Normalised feats (T, F) of utterance `index` in speed variant `variant`."""
        return self.variants[index][variant]

    def item_seed(self, index: int, epoch: int) -> int:
        return ((self.seed * 1_000_003 + epoch) * 1_000_003 + index) % 2**31


class AudioDataset(FeatureDataset):
    """Like FeatureDataset, but features are made from the waveform when an item is read, after
    waveform augmentation (asr.augment: reverberation, babble, noise, telephone channel, gain).

    Waveforms come from memory (`waveforms`: one tuple of speed variants per utterance, see
    load_speed_variants) or, for corpora too large to hold, from the files (run it in DataLoader
    worker processes; lengths for batching then come from the manifest durations). The speed
    variant and every augmentation draw come from the item's (seed, epoch, index) seed, so a
    resumed run sees exactly the same audio. A file that fails to decode mid-training yields a
    single silent frame, which CTC cannot align (zero_infinity drops it from the loss), and a
    warning: one bad file never stops an epoch.
    """

    def __init__(
        self,
        utterances: Sequence[Utterance],
        front_end: FrontEnd,
        vocab: Vocab,
        specaugment: SpecAugmentConfig | None = None,
        seed: int = 0,
        speeds: Sequence[float] = (1.0,),
        augment: AugmentConfig | None = None,
        waveforms: Sequence[Sequence[np.ndarray]] | None = None,
    ) -> None:
        super().__init__(utterances, [], vocab, front_end.cmvn, specaugment, seed)
        self.front_end, self.speeds = front_end, tuple(speeds)
        self.waveforms = None if waveforms is None else [tuple(w) for w in waveforms]
        self.config = front_end.config
        self.augmenter = None
        if augment is not None and augment.enabled:
            self.augmenter = Augmenter(augment, self.config.sample_rate, babble_source=self.other_utterance)

    @property
    def num_frames(self) -> list[int]:
        return [self._frames(i, 0) for i in range(len(self))]

    def epoch_num_frames(self, epoch: int) -> list[int]:
        return [self._frames(i, self.variant_index(i, epoch)) for i in range(len(self))]

    def variant_count(self, index: int) -> int:
        return len(self.speeds)

    def _frames(self, index: int, variant: int) -> int:
        if self.waveforms is not None:
            return self.config.num_frames(len(self.waveforms[index][variant]))
        seconds = self.utterances[index].duration / self.speeds[variant]
        return self.config.num_frames(round(seconds * self.config.sample_rate))

    def waveform(self, index: int, variant: int) -> np.ndarray:
        """Samples (N,) of utterance `index` at speed variant `variant` (raises AudioError)."""
        if self.waveforms is not None:
            return self.waveforms[index][variant]
        rate = self.config.sample_rate
        return change_speed(load_audio(self.utterances[index].audio, rate), self.speeds[variant], rate)

    def other_utterance(self, rng: np.random.Generator, num_samples: int) -> np.ndarray:
        """A random training utterance's samples at speed 1.0 (babble talkers); empty if unreadable."""
        try:
            return self.waveform(int(rng.integers(len(self))), 0)
        except ASRError:
            return np.zeros(0, dtype=np.float32)

    def features(self, index: int, variant: int, seed: int) -> torch.Tensor:
        try:
            samples = self.waveform(index, variant)
        except ASRError as err:
            warnings.warn(f"{self.utterances[index].id}: {err}; left out of this batch's loss", stacklevel=1)
            return torch.zeros(1, self.config.n_mels)
        if self.augmenter is not None:
            samples = self.augmenter(samples, np.random.default_rng([seed, AUGMENT_STREAM]))
        return torch.from_numpy(self.front_end(samples))


AUGMENT_STREAM = 1  # the augmentation's random stream, apart from the variant and SpecAugment draws


def view_seed(seed: int, view: int) -> int:
    """The SpecAugment seed of an item's view `view` (view 0 keeps the item's own seed)."""
    return seed if view == 0 else (seed * 1_000_003 + view) % 2**31


def collate(items: Sequence[tuple[str, torch.Tensor, torch.Tensor]]) -> Batch:
    """Pad (id, feats (T, F), tokens (U,)) items into a Batch; padding is 0.

    Items with feats (V, T, F) (V views of each utterance) give a Batch of V x B rows, view by view.
    """
    if items and items[0][1].dim() == 3:
        views = items[0][1].shape[0]
        flat = [(i, f[v], t) for v in range(views) for i, f, t in items]
        return replace(collate(flat), views=views)
    ids = [i for i, _, _ in items]
    feats = torch.nn.utils.rnn.pad_sequence([f for _, f, _ in items], batch_first=True)
    tokens = torch.nn.utils.rnn.pad_sequence([t for _, _, t in items], batch_first=True)
    feat_lens = torch.tensor([f.shape[0] for _, f, _ in items], dtype=torch.long)
    token_lens = torch.tensor([t.shape[0] for _, _, t in items], dtype=torch.long)
    return Batch(feats, feat_lens, tokens, token_lens, ids)


class LengthBucketSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of similar-length utterances holding at most `max_frames` padded frames.

    Each epoch, lengths are jittered by up to `jitter` (relative) before sorting, so batches
    differ between epochs while padding stays low; batch order is shuffled. Everything is drawn
    from a generator seeded with (seed, epoch): the same epoch always gives the same batches.

    Distributed (num_replicas > 1): every rank forms the same global batches of up to
    num_replicas * max_frames frames and num_replicas * max_batch_size utterances, and takes
    every num_replicas-th utterance of each (by length), so the ranks' batches are different,
    similar in length, and together exactly the batch a single process would train on with the
    global limits. Global batches with fewer utterances than ranks are dropped.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        max_frames: int,
        max_batch_size: int = 256,
        shuffle: bool = True,
        seed: int = 0,
        jitter: float = 0.1,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if max_frames < max(lengths, default=0):
            longest = max(lengths)
            raise ASRError(f"max_frames={max_frames} is smaller than the longest utterance ({longest} frames)")
        self.lengths = list(lengths)
        self.max_frames = max_frames
        self.max_batch_size = max_batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.jitter = jitter
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0

    def set_epoch(self, epoch: int, lengths: Sequence[int] | None = None) -> None:
        """Select the epoch's batches; `lengths` replaces the utterance lengths (the speed variants
        this epoch uses: a 0.9-speed copy is 11 % longer), so no batch exceeds max_frames."""
        self.epoch = epoch
        if lengths is not None:
            if len(lengths) != len(self.lengths):
                raise ValueError(f"{len(lengths)} lengths for a sampler of {len(self.lengths)} utterances")
            self.lengths = list(lengths)

    def batches(self) -> list[list[int]]:
        """This rank's batches of the current epoch (indices into lengths)."""
        batches = self._global_batches()
        if self.num_replicas == 1:
            return batches
        by_length = (sorted(b, key=lambda i: self.lengths[i]) for b in batches if len(b) >= self.num_replicas)
        return [b[self.rank :: self.num_replicas] for b in by_length]

    def _global_batches(self) -> list[list[int]]:
        max_frames = self.max_frames * self.num_replicas
        max_batch_size = self.max_batch_size * self.num_replicas
        lengths = torch.tensor(self.lengths, dtype=torch.float64)
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        if self.shuffle:
            noise = 1 + self.jitter * (2 * torch.rand(len(lengths), generator=generator, dtype=torch.float64) - 1)
            order = torch.argsort(lengths * noise).tolist()
        else:
            order = torch.argsort(lengths, stable=True).tolist()
        batches, current, longest = [], [], 0
        for index in order:
            new_longest = max(longest, self.lengths[index])
            if current and (new_longest * (len(current) + 1) > max_frames or len(current) >= max_batch_size):
                batches.append(current)
                current, new_longest = [], self.lengths[index]
            current.append(index)
            longest = new_longest
        if current:
            batches.append(current)
        if self.shuffle:
            permutation = torch.randperm(len(batches), generator=generator).tolist()
            batches = [batches[i] for i in permutation]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())


