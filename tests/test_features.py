"""asr.frontend's log-mel (against torchaudio's MelSpectrogram) and CMVN stats; asr.specaugment."""

import math

import numpy as np
import pytest
import torch

from asr.errors import ASRError
from asr.frontend import LOG_FLOOR, Cmvn, FeatureConfig, compute_cmvn, log_mel
from asr.specaugment import SpecAugmentConfig, spec_augment


def noisy_sine(num_samples: int, seed: int, freq: float = 440.0) -> np.ndarray:
    """A tone plus white noise: every mel bin well above the log floor."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / 16000
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(num_samples)).astype(np.float32)


# --- log-mel -----------------------------------------------------------------------------------


def test_default_feature_config_window_and_hop():
    config = FeatureConfig()
    assert config.win_length == 400  # 25 ms at 16 kHz
    assert config.hop_length == 160  # 10 ms at 16 kHz
    assert config.num_frames(16000) == 101


@pytest.mark.parametrize("num_samples", [400, 15999, 16000, 16159, 16160])
def test_log_mel_shape_is_n_over_hop_plus_one_by_80(num_samples):
    feats = log_mel(noisy_sine(num_samples, 0), FeatureConfig())
    assert feats.shape == (num_samples // 160 + 1, 80)
    assert feats.dtype == np.float32
    assert np.isfinite(feats).all()


@pytest.mark.parametrize("config", [FeatureConfig(), FeatureConfig(n_mels=40, n_fft=400, f_min=20.0, f_max=7000.0,
                                                                   hop_ms=12.5)])
def test_log_mel_is_torchaudios_mel_spectrogram(config):
    """The features every model was trained on: torchaudio's MelSpectrogram (centred, reflect-padded,
    periodic Hann, power 2, HTK mel scale, no area normalisation) plus the log floor."""
    import torchaudio

    wave = noisy_sine(16_000 + 123, 4) * np.float32(0.5)
    reference = torchaudio.transforms.MelSpectrogram(
        sample_rate=config.sample_rate, n_fft=config.n_fft, win_length=config.win_length,
        hop_length=config.hop_length, f_min=config.f_min, f_max=config.f_max, n_mels=config.n_mels,
        power=2.0, center=True, pad_mode="reflect", norm=None, mel_scale="htk")(torch.from_numpy(wave))
    expected = (reference + LOG_FLOOR).log().T.numpy()  # (T, n_mels)
    np.testing.assert_allclose(log_mel(wave, config), expected, atol=1e-4, rtol=1e-5)


def test_log_mel_accepts_tensor_and_array_alike():
    wave = noisy_sine(3200, 1)
    config = FeatureConfig()
    np.testing.assert_array_equal(log_mel(wave, config), log_mel(torch.from_numpy(wave), config))


def test_log_mel_doubling_amplitude_adds_log_4():
    # power spectrum scales by 2**2, so every log-mel cell moves by log(4) (floor is negligible here)
    wave = noisy_sine(8000, 2)
    config = FeatureConfig()
    diff = log_mel(2 * wave, config) - log_mel(wave, config)
    np.testing.assert_allclose(diff, math.log(4.0), atol=1e-3, rtol=0)


def test_log_mel_of_silence_is_the_log_floor():
    feats = log_mel(np.zeros(1600, dtype=np.float32), FeatureConfig())  # (11, 80)
    assert feats.shape == (11, 80)
    np.testing.assert_allclose(feats, math.log(LOG_FLOOR), rtol=1e-6)


def test_log_mel_respects_n_mels():
    config = FeatureConfig(n_mels=40)
    assert log_mel(noisy_sine(1600, 3), config).shape == (11, 40)


# --- CMVN --------------------------------------------------------------------------------------


def random_feats(seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    scale = torch.linspace(0.5, 4.0, 8)  # (F=8,) per-bin spread
    offset = torch.linspace(-10.0, 3.0, 8)  # (F=8,) per-bin mean
    return [torch.randn(n, 8, generator=gen) * scale + offset for n in (50, 120, 7, 300)]


def test_cmvn_normalises_pooled_frames_to_zero_mean_unit_std():
    feats = random_feats(0)
    cmvn = compute_cmvn(feats)
    assert len(cmvn.mean) == len(cmvn.std) == 8
    pooled = torch.cat([cmvn.apply(f) for f in feats])  # (477, 8)
    torch.testing.assert_close(pooled.mean(0), torch.zeros(8), atol=1e-4, rtol=0)
    torch.testing.assert_close(pooled.std(0, unbiased=False), torch.ones(8), atol=1e-4, rtol=0)


def test_cmvn_stats_match_direct_computation():
    feats = random_feats(1)
    pooled = torch.cat(feats).double()
    cmvn = compute_cmvn(iter(feats))  # any iterable, e.g. a generator
    np.testing.assert_allclose(cmvn.mean, pooled.mean(0).numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(cmvn.std, pooled.std(0, unbiased=False).numpy(), rtol=1e-7)


def test_cmvn_constant_bin_std_is_floored():
    feats = [torch.ones(10, 3) * torch.tensor([1.0, 2.0, 3.0])]  # zero variance in every bin
    cmvn = compute_cmvn(feats, min_std=1e-5)
    assert cmvn.std == pytest.approx((1e-5,) * 3)
    assert torch.isfinite(cmvn.apply(feats[0])).all()


def test_cmvn_of_zero_frames_raises():
    with pytest.raises(ASRError, match="^cannot compute CMVN stats from zero frames$"):
        compute_cmvn([])


def test_cmvn_apply_batched_shape():
    cmvn = Cmvn(mean=(1.0, 2.0), std=(2.0, 4.0))
    batch = torch.tensor([[[3.0, 6.0], [1.0, 2.0]]])  # (B=1, T=2, F=2)
    expected = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    torch.testing.assert_close(cmvn.apply(batch), expected)


def test_cmvn_save_load_round_trip(tmp_path):
    cmvn = compute_cmvn(random_feats(2))
    path = tmp_path / "cmvn.json"
    cmvn.save(path)
    assert Cmvn.load(path) == cmvn


@pytest.mark.parametrize("content", ["this is not json", '{"mean": [1.0]}', "[1, 2, 3]", '{"mean": 1, "std": 2}'])
def test_cmvn_load_garbage_raises_naming_file(tmp_path, content):
    path = tmp_path / "cmvn.json"
    path.write_text(content)
    with pytest.raises(ASRError, match="cmvn.json"):
        Cmvn.load(path)


def test_cmvn_load_missing_file_raises_naming_file(tmp_path):
    with pytest.raises(ASRError, match="missing.json"):
        Cmvn.load(tmp_path / "missing.json")


# --- SpecAugment -------------------------------------------------------------------------------


def positive_feats(frames: int = 200, bins: int = 80) -> torch.Tensor:
    """feats (T, F) with no zero cell, so every zero in the output is a mask."""
    return torch.rand(frames, bins, generator=torch.Generator().manual_seed(7)) + 1.0


def test_spec_augment_keeps_shape_and_masks_whole_rows_or_columns():
    feats = positive_feats()  # (200, 80)
    config = SpecAugmentConfig()
    masked_any = False
    for seed in range(10):
        out = spec_augment(feats, config, seed=seed)
        assert out.shape == feats.shape
        zero = out == 0
        masked_any |= bool(zero.any())
        # every cell is either untouched or zeroed ...
        assert torch.equal(out[~zero], feats[~zero])
        # ... and a zeroed cell lies in a fully masked frame or a fully masked bin
        full_rows = zero.all(dim=1, keepdim=True)  # (T, 1)
        full_cols = zero.all(dim=0, keepdim=True)  # (1, F)
        assert torch.equal(zero, full_rows | full_cols)
    assert masked_any


def test_spec_augment_same_seed_same_output_different_seed_differs():
    feats = positive_feats()
    config = SpecAugmentConfig()
    first = spec_augment(feats, config, seed=3)
    assert torch.equal(first, spec_augment(feats, config, seed=3))
    others = [spec_augment(feats, config, seed=s) for s in range(4, 9)]
    assert any(not torch.equal(first, o) for o in others)


@pytest.mark.parametrize("frames", [7, 60, 200, 731])
def test_spec_augment_draws_the_masks_torchaudio_draws_after_seeding(frames):
    import torchaudio

    feats = positive_feats(frames=frames)
    config = SpecAugmentConfig()
    time_width = min(config.time_mask_width, math.floor(frames * config.time_mask_max_ratio))
    for seed in range(25):
        spec = feats.transpose(0, 1).unsqueeze(0).clone()  # (1, F, T), torchaudio's layout
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for _ in range(config.freq_masks):
                spec = torchaudio.functional.mask_along_axis(spec, config.freq_mask_width, 0.0, axis=1)
            for _ in range(config.time_masks if time_width > 0 else 0):
                spec = torchaudio.functional.mask_along_axis(spec, time_width, 0.0, axis=2)
        assert torch.equal(spec_augment(feats, config, seed=seed), spec.squeeze(0).transpose(0, 1))


def test_spec_augment_does_not_modify_input():
    feats = positive_feats()
    before = feats.clone()
    spec_augment(feats, SpecAugmentConfig(), seed=0)
    assert torch.equal(feats, before)


def test_spec_augment_leaves_global_rng_untouched():
    torch.manual_seed(123)
    expected = torch.rand(5)
    torch.manual_seed(123)
    spec_augment(positive_feats(), SpecAugmentConfig(), seed=11)
    assert torch.equal(torch.rand(5), expected)


def test_spec_augment_time_mask_limited_by_ratio_on_short_utterance():
    feats = positive_feats(frames=20, bins=10)  # (20, 10): ratio 0.2 -> at most 4 frames per mask
    config = SpecAugmentConfig(freq_masks=0, time_masks=1, time_mask_width=40, time_mask_max_ratio=0.2)
    widths = []
    for seed in range(200):
        out = spec_augment(feats, config, seed=seed)
        widths.append(int((out == 0).all(dim=1).sum()))
    assert max(widths) <= math.floor(20 * 0.2)
    assert max(widths) > 0  # masking does happen


def test_spec_augment_no_time_mask_when_ratio_allows_none():
    feats = positive_feats(frames=4, bins=10)  # 4 * 0.2 < 1 frame: no time mask at all
    config = SpecAugmentConfig(freq_masks=0, time_masks=2, time_mask_width=40, time_mask_max_ratio=0.2)
    for seed in range(20):
        assert torch.equal(spec_augment(feats, config, seed=seed), feats)


def test_spec_augment_freq_mask_width_limit():
    feats = positive_feats(frames=30, bins=80)
    config = SpecAugmentConfig(freq_masks=1, freq_mask_width=5, time_masks=0)
    for seed in range(50):
        out = spec_augment(feats, config, seed=seed)
        assert int((out == 0).all(dim=0).sum()) < 5
        assert not (out == 0).all(dim=1).any()  # no time masking


def test_spec_augment_config_enabled():
    assert SpecAugmentConfig().enabled
    assert not SpecAugmentConfig(freq_masks=0, time_masks=0).enabled
