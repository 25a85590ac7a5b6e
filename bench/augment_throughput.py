"""Speed of training-time augmentation (asr.augment) in one process with one torch thread (= one
DataLoader worker), on AN4-like 3 s utterances.

    python bench/augment_throughput.py [--quick] [--an4-dir ../shared/data/an4] [--noise-dir ../shared/data/noise]

(a) ms per simulated room impulse response (pyroomacoustics image-source model) against RT60;
(b) augmented utterances per second, each kind alone at probability 1 and everything on
    (rooms from a RirBank made once; babble from other utterances; recorded noise from the
    Speech Commands background noise, CC BY 4.0, see its LICENSE). Utterances: AN4 training
    files cut or looped to 3 s (generated harmonic tones when AN4 is absent).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from report import Report

ROOT = Path(__file__).resolve().parent.parent
RATE = 16_000
UTTERANCE_SECONDS = 3.0  # AN4 utterances average 2.7 s
RT60S = (0.2, 0.4, 0.6, 0.8, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 room per RT60, 20 utterances")
    parser.add_argument("--an4-dir", default=str(ROOT.parent / "shared" / "data" / "an4"))
    parser.add_argument("--noise-dir", default=str(ROOT.parent / "shared" / "data" / "noise"))
    parser.add_argument("--rooms", type=int, default=3, help="rooms simulated per RT60")
    parser.add_argument("--utterances", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rep = Report("augment_throughput", quick=args.quick)
    rooms, count = (1, 20) if args.quick else (args.rooms, args.utterances)

    from asr import augment as module
    from asr.augment import AugmentConfig, Augmenter, RirBank, simulated_rir

    started = time.perf_counter()
    import pyroomacoustics  # noqa: F401  (its import, ~3 s with scipy, is not a room's cost)

    import_seconds = time.perf_counter() - started
    rir_rows = []
    for rt60 in RT60S:
        times, lengths = [], []
        for seed in range(rooms):
            started = time.perf_counter()
            rir = simulated_rir(rt60, RATE, np.random.default_rng([seed, int(rt60 * 1000)]))
            times.append(time.perf_counter() - started)
            lengths.append(len(rir) / RATE)
        rir_rows.append({"rt60": rt60, "rooms": rooms, "ms_median": round(1000 * statistics.median(times)),
                         "ms_max": round(1000 * max(times)), "rir_seconds": round(statistics.mean(lengths), 2)})
        print(f"  RT60 {rt60} s: {rir_rows[-1]['ms_median']} ms per room (max {rir_rows[-1]['ms_max']})", flush=True)

    utterances = three_second_utterances(Path(args.an4_dir), count)
    noise_dir = args.noise_dir if Path(args.noise_dir).is_dir() else ""
    everything = AugmentConfig(
        gain_prob=1.0, noise_prob=1.0, babble_prob=1.0, noise_dir=noise_dir, noise_dir_prob=1.0 if noise_dir else 0.0,
        reverb_prob=1.0, telephone_prob=1.0, trim_prob=1.0,
    )
    off = AugmentConfig(noise_dir=noise_dir)
    kinds = {
        "trim to the speech": dataclasses.replace(off, trim_prob=1.0),
        "gain": dataclasses.replace(off, gain_prob=1.0),
        "coloured noise": dataclasses.replace(off, noise_prob=1.0),
        "babble (3-6 talkers)": dataclasses.replace(off, babble_prob=1.0),
        "recorded noise": dataclasses.replace(off, noise_dir_prob=1.0) if noise_dir else None,
        "reverberation (RirBank)": dataclasses.replace(off, reverb_prob=1.0),
        "telephone": dataclasses.replace(off, telephone_prob=1.0),
        "everything on": everything,
    }

    def babble_source(rng: np.random.Generator, num_samples: int) -> np.ndarray:
        return utterances[int(rng.integers(len(utterances)))]

    if args.quick:
        module.RIR_BANK_SIZE = 4
    started = time.perf_counter()
    bank = RirBank(everything, RATE, module.RIR_BANK_SIZE, module.RIR_BANK_SEED)  # what an Augmenter makes
    bank_seconds = time.perf_counter() - started
    rows = []
    for name, config in kinds.items():
        if config is None:
            continue
        augment = Augmenter(dataclasses.replace(config, reverb_prob=0.0), RATE, babble_source=babble_source)
        augment.config, augment.rirs = config, bank  # the same rooms, made once above
        augment(utterances[0], np.random.default_rng(0))  # warm-up (and librosa's first load, for trimming)
        started = time.perf_counter()
        for index, samples in enumerate(utterances):
            augment(samples, np.random.default_rng(index))
        seconds = time.perf_counter() - started
        rows.append({"augmentation": name, "utterances_per_s": round(len(utterances) / seconds, 1),
                     "audio_s_per_s": round(len(utterances) * UTTERANCE_SECONDS / seconds, 1),
                     "ms_per_utterance": round(1000 * seconds / len(utterances), 2)})
        print(f"  {name}: {rows[-1]['utterances_per_s']} utterances/s", flush=True)

    rep.write(
        {"utterance_seconds": UTTERANCE_SECONDS, "utterances": len(utterances), "torch_threads": 1,
         "pyroomacoustics_import_seconds": round(import_seconds, 2), "rir_bank_size": module.RIR_BANK_SIZE, "rir_bank_seconds": round(bank_seconds, 1),
         "noise_dir": noise_dir, "rirs": rir_rows, "augmentation": rows},
        tables=[
            ("Simulated room impulse responses (one core)", rir_rows, ["rt60", "rooms", "ms_median", "ms_max", "rir_seconds"]),
            (f"Augmentation of {UTTERANCE_SECONDS:g} s utterances, one worker (RirBank of "
             f"{module.RIR_BANK_SIZE} rooms made once in {bank_seconds:.1f} s)", rows,
             ["augmentation", "utterances_per_s", "audio_s_per_s", "ms_per_utterance"]),
        ],
    )


def three_second_utterances(an4_dir: Path, count: int) -> list[np.ndarray]:
    """`count` AN4 training utterances looped or cut to 3 s, else generated harmonic tones."""
    from asr.audio import load_audio
    from asr.augment import loop_to_length

    num_samples = int(UTTERANCE_SECONDS * RATE)
    files = sorted((an4_dir / "wav" / "an4_clstk").rglob("*.wav"))[:count]
    if files:
        return [loop_to_length(load_audio(f, RATE), num_samples) for f in files]
    print(f"augment_throughput: no AN4 at {an4_dir}: generated tones instead")
    t = np.arange(num_samples) / RATE
    return [(0.3 * np.sin(2 * np.pi * (120 + 10 * i) * t)).astype(np.float32) for i in range(count)]


if __name__ == "__main__":
    main()
