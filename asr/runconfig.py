"""The run configuration: every section of a `conf/*.yaml` file (training, recipes and benchmarks
read it; transcription does not: a model carries what it needs)."""

from __future__ import annotations

from dataclasses import dataclass, field

from asr.augment import AugmentConfig
from asr.frontend import FeatureConfig
from asr.model import ModelConfig
from asr.specaugment import SpecAugmentConfig


@dataclass(frozen=True)
class DataConfig:
    train_manifest: str = "exp/an4/data/train.jsonl"
    dev_manifest: str = "exp/an4/data/dev.jsonl"
    vocab: str = "exp/an4/data/char/vocab.json"
    cmvn: str = "exp/an4/data/cmvn.json"
    units: str = "char"  # char | bpe (sentencepiece); `asr vocab --config` builds data.vocab in these units
    bpe_size: int = 256  # BPE pieces (an upper bound: small corpora may give fewer)


@dataclass(frozen=True)
class TrainConfig:
    out_dir: str = "exp/an4/blstm"
    epochs: int = 60
    max_frames: int = 20_000  # padded 10 ms input frames per batch
    max_batch_size: int = 64
    lr: float = 2e-3  # peak learning rate, reached after warmup_steps
    weight_decay: float = 1e-2
    warmup_steps: int = 300
    final_lr_ratio: float = 0.02  # cosine decay ends at lr * final_lr_ratio
    grad_clip: float = 5.0  # max global gradient norm
    seed: int = 1
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # bf16 autocast on CUDA; on the CPU see cpu_amp
    cpu_amp: bool = False  # bf16 autocast on the CPU too: worth it only on AMX CPUs (bench/results/train_throughput_cpu_bf16.json);
    # without bf16 instructions the trainer says so and stays in fp32
    threads: int = 0  # CPU threads for torch; 0 = torch's default
    num_workers: int = 0  # DataLoader workers: 0 with cached features; several without
    cache_features: bool = True  # compute features once and hold them in memory (small corpora)
    checkpoint_every: int = 200  # steps between last.pt writes (plus one at each epoch end)
    max_bad_steps: int = 50  # consecutive non-finite steps before training stops
    speed_perturb: tuple[float, ...] = (1.0,)  # speed factors; each epoch an utterance uses one (1.0 first)
    average_last: int = 0  # average the weights of the last N epochs; kept as best.pt if better on dev
    keep: str = "best"  # best.pt holds: best (lowest dev WER) | last (the final epoch, or the average)
    consistency_weight: float = 0.0  # CR-CTC: > 0 trains on two SpecAugment views of each utterance (twice the
    # compute per step) and adds this weight x the KL between their posteriors (asr.train.consistency_loss)
    init_from: str = ""  # a checkpoint whose weights start this run where names and shapes fit (asr.warm_start);
    # ignored when resuming
    tensorboard: bool = True  # also write <out_dir>/tensorboard/ event files when tensorboard is installed (asr[tensorboard])

    def __post_init__(self) -> None:
        if self.keep not in ("best", "last"):
            raise ValueError(f"train.keep must be 'best' or 'last', got {self.keep!r}")
        if not self.consistency_weight >= 0:
            raise ValueError(f"train.consistency_weight must be 0 (off) or positive, got {self.consistency_weight}")


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    specaugment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # waveform augmentation (training only)
