"""Features for large corpora: on the fly in DataLoader workers, cached on disk, or on the GPU.

    python bench/feature_pipeline.py [--quick] [--manifest exp/an4/data/train.jsonl]

On the AN4 training audio, as WAV and re-encoded as FLAC (LibriSpeech's format), one process
with one torch thread (what one DataLoader worker has):
(a) on the fly: asr.data.AudioDataset items, i.e. read + speed perturbation (0.9/1.0/1.1) +
    front end (log-mel, level normalisation, CMVN) + SpecAugment, in audio seconds per second;
    and the same with the config's waveform augmentation (reverberation, babble, noise,
    telephone channel, gain: asr.augment) on top, the AN4 recipe's training pipeline;
(b) cached: the same log-mels (speed 1.0) stored once as fp16 shards of 1,000 utterances
    (torch.save), then read back from a warm page cache; disk bytes per hour of audio;
(c) with CUDA only: log-mel of padded audio batches on the GPU (torchaudio MelSpectrogram).
It then works out the workers per GPU that (a) needs to feed a GPU training at 3,000x real
time (the bench/train_throughput.py target) and the disk (b) needs for 100 h and 960 h, with
one copy per speed factor if speed perturbation is to stay on.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch

from report import Report

ROOT = Path(__file__).resolve().parent.parent
GPU_TARGET = 3000  # audio s/s a GPU trains at (bench/train_throughput.py target)
SHARD_UTTERANCES = 1000
HOURS = {"train-clean-100": 100.6, "train 960 h": 961.1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 60 utterances")
    parser.add_argument("--manifest", default="exp/an4/data/train.jsonl")
    parser.add_argument("--config", default="conf/an4_blstm.yaml")
    args = parser.parse_args()
    report = Report("feature_pipeline", quick=args.quick)
    manifest = ROOT / args.manifest
    if not manifest.is_file():
        report.skip(f"{manifest} not found (run: bash recipes/an4/run.sh --stop-stage 2)")

    from asr.config import load_config
    from asr.data import AudioDataset
    from asr.manifest import read_manifest
    from asr.frontend import Cmvn, FrontEnd
    from asr.audio import load_audio
    from asr.text import Vocab
    from asr.runconfig import RunConfig

    torch.set_num_threads(1)
    config = load_config(RunConfig, ROOT / args.config)
    utterances = read_manifest(manifest)[: 60 if args.quick else None]
    audio_seconds = sum(u.duration for u in utterances)
    vocab = Vocab.from_texts(u.text for u in utterances)
    cmvn = Cmvn(mean=(0.0,) * config.features.n_mels, std=(1.0,) * config.features.n_mels)
    rows = []

    with tempfile.TemporaryDirectory(prefix="feature-bench-") as tmp:
        flac = []
        for u in utterances:  # LibriSpeech is FLAC: decoding it costs more than reading WAV
            path = Path(tmp) / f"{u.id}.flac"
            sf.write(path, load_audio(u.audio, config.features.sample_rate), config.features.sample_rate)
            flac.append(type(u)(u.id, str(path), u.duration, u.text, u.speaker))

        front_end = FrontEnd(config.features, cmvn)
        for name, items, augment in (("WAV", utterances, None), ("FLAC", flac, None),
                                     ("FLAC + waveform augmentation", flac, config.augment)):
            dataset = AudioDataset(items, front_end, vocab, config.specaugment, speeds=config.train.speed_perturb,
                                   augment=augment)
            for i in range(5):  # warm-up: imports, filter banks, resampler set-up
                dataset[i]
            start = time.perf_counter()
            for i in range(len(dataset)):
                dataset[i]
            seconds = time.perf_counter() - start
            rate = audio_seconds / seconds
            rows.append({"pipeline": f"on the fly, {name}", "audio_s_per_s": round(rate),
                         "workers_for_3000x": math.ceil(GPU_TARGET / rate)})

        feats = [front_end.unnormalised(load_audio(u.audio, config.features.sample_rate)).half() for u in flac]
        shards = []
        for start in range(0, len(feats), SHARD_UTTERANCES):
            path = Path(tmp) / f"shard{start // SHARD_UTTERANCES:05d}.pt"
            torch.save({u.id: f for u, f in zip(utterances[start:], feats[start:start + SHARD_UTTERANCES])}, path)
            shards.append(path)
        disk_bytes = sum(p.stat().st_size for p in shards)
        start = time.perf_counter()
        for path in shards:
            for f in torch.load(path, weights_only=True).values():
                f.float()
        seconds = time.perf_counter() - start
        gb_per_hour = disk_bytes / 1e9 / (audio_seconds / 3600)
        rows.append({"pipeline": "cached fp16 shards, read", "audio_s_per_s": round(audio_seconds / seconds),
                     "workers_for_3000x": math.ceil(GPU_TARGET / (audio_seconds / seconds))})

    if torch.cuda.is_available():
        rows.append(gpu_log_mel(config.features, utterances))

    disk = [{"corpus": name, "hours": hours, "GB_one_copy": round(gb_per_hour * hours, 1),
             "GB_with_3_speeds": round(3 * gb_per_hour * hours, 1)} for name, hours in HOURS.items()]
    report.write(
        {"config": args.config, "manifest": args.manifest, "utterances": len(utterances),
         "audio_seconds": round(audio_seconds, 1), "torch_threads": 1, "speeds": list(config.train.speed_perturb),
         "cache_gb_per_audio_hour": round(gb_per_hour, 3), "pipelines": rows, "disk": disk},
        tables=[("One worker process (1 thread)", rows, ["pipeline", "audio_s_per_s", "workers_for_3000x"]),
                ("Cached fp16 log-mels on disk", disk, ["corpus", "hours", "GB_one_copy", "GB_with_3_speeds"])],
    )


def gpu_log_mel(features, utterances) -> dict:
    """Log-mel of padded batches of 32 utterances on the GPU (audio read beforehand, not timed)."""
    import torchaudio

    from asr.audio import load_audio

    device = torch.device("cuda")
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=features.sample_rate, n_fft=features.n_fft, win_length=round(features.win_ms * features.sample_rate / 1000),
        hop_length=round(features.hop_ms * features.sample_rate / 1000), n_mels=features.n_mels).to(device)
    audio = [torch.from_numpy(load_audio(u.audio, features.sample_rate)) for u in utterances]
    batches = [torch.nn.utils.rnn.pad_sequence(audio[i:i + 32], batch_first=True) for i in range(0, len(audio), 32)]
    for batch in batches[:2]:  # warm-up
        mel(batch.to(device))
    torch.cuda.synchronize()
    start = time.perf_counter()
    for batch in batches:
        (mel(batch.to(device)) + 1e-6).log()
    torch.cuda.synchronize()
    rate = sum(u.duration for u in utterances) / (time.perf_counter() - start)
    return {"pipeline": "GPU log-mel (upload + transform)", "audio_s_per_s": round(rate), "workers_for_3000x": 0}


if __name__ == "__main__":
    main()
