"""asr.model: frame stacking, padded reversal, the (bi)recurrent acoustic model."""

import itertools
import math

import pytest
import torch

from asr.model import AcousticModel, ModelConfig, reverse_padded, stack_frames

CELL_DIRECTIONS = list(itertools.product(["rnn", "lstm", "gru"], [True, False]))


def tiny_model(cell="lstm", bidirectional=True, input_dim=6, vocab_size=5, seed=0, **kwargs) -> AcousticModel:
    torch.manual_seed(seed)
    options = dict(cell=cell, bidirectional=bidirectional, num_layers=2, hidden_size=8, dropout=0.1, frame_stack=3)
    options.update(kwargs)
    return AcousticModel(ModelConfig(**options), input_dim=input_dim, vocab_size=vocab_size)


def padded_batch(lengths, dim=6, seed=1) -> tuple[torch.Tensor, torch.Tensor]:
    """feats (B, max T, dim), zero past each length (as collate pads), and lens (B,)."""
    gen = torch.Generator().manual_seed(seed)
    feats = torch.zeros(len(lengths), max(lengths), dim)
    for i, n in enumerate(lengths):
        feats[i, :n] = torch.randn(n, dim, generator=gen)
    return feats, torch.tensor(lengths)


# --- stack_frames ------------------------------------------------------------------------------


def test_stack_frames_shapes_and_lengths():
    feats = torch.randn(2, 10, 4)  # (B=2, T=10, F=4)
    stacked, lens = stack_frames(feats, torch.tensor([10, 7]), 3)
    assert stacked.shape == (2, 4, 12)  # ceil(10 / 3) = 4 frames of 3 * 4 values
    assert lens.tolist() == [4, 3]  # ceil(10 / 3), ceil(7 / 3)


def test_stack_frames_concatenates_consecutive_frames_and_zero_pads():
    feats = torch.arange(1, 2 * 5 * 2 + 1, dtype=torch.float32).reshape(2, 5, 2)  # (2, 5, 2)
    stacked, lens = stack_frames(feats, torch.tensor([5, 4]), 2)  # (2, 3, 4)
    assert stacked.shape == (2, 3, 4)
    assert lens.tolist() == [3, 2]
    for b in range(2):
        for j in range(3):
            expected = [feats[b, t] if t < 5 else torch.zeros(2) for t in (2 * j, 2 * j + 1)]
            assert torch.equal(stacked[b, j], torch.cat(expected))


def test_stack_frames_exact_multiple_has_no_padding():
    feats = torch.randn(1, 6, 3)
    stacked, lens = stack_frames(feats, torch.tensor([6]), 3)
    assert stacked.shape == (1, 2, 9)
    assert torch.equal(stacked.reshape(1, 6, 3), feats)
    assert lens.tolist() == [2]


def test_stack_frames_one_is_identity():
    feats, lens = torch.randn(2, 5, 3), torch.tensor([5, 2])
    out, out_lens = stack_frames(feats, lens, 1)
    assert torch.equal(out, feats) and torch.equal(out_lens, lens)


# --- reverse_padded ----------------------------------------------------------------------------


def test_reverse_padded_reverses_within_length_only():
    x = torch.arange(10, dtype=torch.float32).reshape(2, 5, 1)  # rows 0..4 and 5..9
    out = reverse_padded(x, torch.tensor([5, 3]))
    assert out[0, :, 0].tolist() == [4, 3, 2, 1, 0]
    assert out[1, :, 0].tolist() == [7, 6, 5, 8, 9]  # first 3 reversed, padding in place


def test_reverse_padded_twice_is_identity():
    x = torch.randn(4, 9, 3)  # (B, T, D)
    lens = torch.tensor([9, 1, 5, 8])
    once = reverse_padded(x, lens)
    assert not torch.equal(once, x)
    assert torch.equal(reverse_padded(once, lens), x)
    for b, n in enumerate(lens.tolist()):
        assert torch.equal(once[b, :n], x[b, :n].flip(0))


# --- AcousticModel -----------------------------------------------------------------------------


@pytest.mark.parametrize(("cell", "bidirectional"), CELL_DIRECTIONS)
def test_model_output_shape_lengths_and_log_probs(cell, bidirectional):
    model = tiny_model(cell, bidirectional).eval()
    feats, lens = padded_batch([10, 7, 4])  # (3, 10, 6)
    with torch.no_grad():
        log_probs, out_lens = model(feats, lens)
    assert log_probs.shape == (3, math.ceil(10 / 3), 5)  # (B, ceil(T / stack), V)
    assert out_lens.tolist() == [math.ceil(n / 3) for n in (10, 7, 4)]
    assert torch.equal(out_lens, model.output_lengths(lens))
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(3, 4))
    assert (log_probs <= 0).all()


@pytest.mark.parametrize(("cell", "bidirectional"), CELL_DIRECTIONS)
def test_model_padding_invariance(cell, bidirectional):
    model = tiny_model(cell, bidirectional).eval()
    feats, lens = padded_batch([13, 7])  # (2, 13, 6); 7 is not a multiple of the stack of 3
    with torch.no_grad():
        batched, out_lens = model(feats, lens)
        alone, alone_lens = model(feats[1:, :7], lens[1:])
    n = int(out_lens[1])
    assert alone.shape == (1, n, 5) and alone_lens.tolist() == [n]
    torch.testing.assert_close(batched[1, :n], alone[0], atol=1e-5, rtol=0)


def test_bidirectional_model_sees_future_unidirectional_does_not():
    feats, lens = padded_batch([12])
    changed = feats.clone()
    changed[0, -1] += 5.0  # change only the last input frame (in the last output frame)
    for bidirectional in (True, False):
        model = tiny_model("gru", bidirectional, num_layers=1).eval()
        with torch.no_grad():
            before, _ = model(feats, lens)
            after, _ = model(changed, lens)
        first_frames_same = torch.allclose(before[0, :-1], after[0, :-1], atol=1e-6)
        assert first_frames_same is (not bidirectional)
        assert not torch.allclose(before[0, -1], after[0, -1])


def test_gradient_reaches_every_parameter():
    model = tiny_model("lstm", True).train()
    feats, lens = padded_batch([10, 6])
    log_probs, out_lens = model(feats, lens)
    weights = torch.randn(log_probs.shape, generator=torch.Generator().manual_seed(2))
    (log_probs * weights).sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name


def test_dropout_active_in_train_mode_only():
    model = tiny_model(dropout=0.5)
    feats, lens = padded_batch([9])
    model.train()
    torch.manual_seed(0)
    a, _ = model(feats, lens)
    b, _ = model(feats, lens)
    assert not torch.allclose(a, b)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(feats, lens)[0], model(feats, lens)[0])


def test_layer_norm_switch():
    with_norm = tiny_model(layer_norm=True)
    without = tiny_model(layer_norm=False)
    assert all(isinstance(n, torch.nn.LayerNorm) for n in with_norm.norms)
    assert all(isinstance(n, torch.nn.Identity) for n in without.norms)
    assert with_norm.num_parameters() - without.num_parameters() == 2 * (2 * 16)  # 2 layers, weight+bias of 16


def test_default_model_parameter_count_under_10m():
    config = ModelConfig()  # 3 x 256 bidirectional LSTM, stack 3, layer norm
    model = AcousticModel(config, input_dim=80, vocab_size=28)
    h, stack = config.hidden_size, config.frame_stack
    lstm = lambda i: 4 * h * (i + h) + 2 * 4 * h  # noqa: E731  weights + two bias vectors
    expected = (
        2 * lstm(80 * stack)  # first layer, both directions
        + 2 * 2 * lstm(2 * h)  # two more layers
        + 3 * 2 * (2 * h)  # layer norms
        + (2 * h) * 28 + 28  # output layer
    )
    assert model.num_parameters() == expected
    assert model.num_parameters() < 10_000_000


SIZES_AT_LEAST_1 = r"^model\.num_layers, model\.hidden_size and model\.frame_stack must be >= 1$"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cell": "transformer"}, r"^model\.cell must be one of \['gru', 'lstm', 'rnn'\], got 'transformer'$"),
        ({"cell": "LSTM"}, r"^model\.cell must be one of \['gru', 'lstm', 'rnn'\], got 'LSTM'$"),
        ({"dropout": 1.0}, r"^model\.dropout must be in \[0, 1\), got 1\.0$"),
        ({"dropout": -0.1}, r"^model\.dropout must be in \[0, 1\), got -0\.1$"),
        ({"num_layers": 0}, SIZES_AT_LEAST_1),
        ({"hidden_size": 0}, SIZES_AT_LEAST_1),
        ({"frame_stack": 0}, SIZES_AT_LEAST_1),
    ],
)
def test_model_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**kwargs)
