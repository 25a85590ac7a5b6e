"""train.init_from: a run that starts from another model's weights (asr.warm_start)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from asr.checkpoint import checkpoint_payload, save_checkpoint
from asr.errors import ASRError
from asr.frontend import Cmvn, FeatureConfig
from asr.model import AcousticModel, ModelConfig
from asr.text import Vocab
from asr.train import train
from asr.warm_start import warm_start

from .conftest import make_tone_experiment, read_metric, tiny_config

CONFIG = ModelConfig(cell="lstm", num_layers=2, hidden_size=32, dropout=0.0, frame_stack=2)


def _saved_model(tmp_path, tokens, config=CONFIG):
    torch.manual_seed(0)
    model = AcousticModel(config, input_dim=80, vocab_size=len(tokens))
    path = tmp_path / "old.pt"
    save_checkpoint(path, checkpoint_payload(model, FeatureConfig(), Cmvn((0.0,) * 80, (1.0,) * 80), Vocab(tokens)))
    return model, path


def test_weights_are_copied_and_output_rows_follow_their_tokens(tmp_path):
    old, path = _saved_model(tmp_path, ("<blank>", " ", "A", "B", "C"))
    torch.manual_seed(1)
    vocab = Vocab(("<blank>", " ", "'", "A", "C", "D"))  # B dropped, ' and D new, the others moved
    new = AcousticModel(CONFIG, input_dim=80, vocab_size=len(vocab))
    fresh = {k: v.clone() for k, v in new.state_dict().items()}
    report = warm_start(new, vocab, str(path))
    old_state, new_state = old.state_dict(), new.state_dict()
    assert all(torch.equal(new_state[k], old_state[k]) for k in new_state if not k.startswith("output."))
    for new_id, old_id in ((0, 0), (1, 1), (3, 2), (4, 4)):  # blank, space, A, C
        assert torch.equal(new.output.weight[new_id], old.output.weight[old_id])
        assert new.output.bias[new_id] == old.output.bias[old_id]
    for new_id in (2, 5):  # ' and D keep their fresh initialisation
        assert torch.equal(new.output.weight[new_id], fresh["output.weight"][new_id])
    assert report.tokens_copied == 4 and report.tokens_new == ("'", "D") and not report.skipped
    assert "output rows for 4 tokens; new tokens \"'\" 'D'" in report.summary(str(path))


def test_a_wider_model_keeps_what_does_not_fit_fresh_and_says_so(tmp_path):
    _, path = _saved_model(tmp_path, ("<blank>", " ", "A"),
                           config=dataclasses.replace(CONFIG, num_layers=3))
    new = AcousticModel(CONFIG, input_dim=80, vocab_size=3)
    report = warm_start(new, Vocab(("<blank>", " ", "A")), str(path))
    assert report.copied > 0 and not report.skipped  # the 2 layers it has all fit; the old third is unused
    wider = AcousticModel(dataclasses.replace(CONFIG, hidden_size=48), input_dim=80, vocab_size=3)
    with pytest.raises(ASRError, match="no weight fits this model"):
        warm_start(wider, Vocab(("<blank>", " ", "A")), str(path))


def test_a_missing_file_is_a_one_line_error(tmp_path):
    model = AcousticModel(CONFIG, input_dim=80, vocab_size=3)
    with pytest.raises(ASRError, match="no such checkpoint file"):
        warm_start(model, Vocab(("<blank>", " ", "A")), str(tmp_path / "none.pt"))


def test_a_run_started_from_a_trained_model_begins_where_it_ended(tmp_path, capsys):
    data = make_tone_experiment(tmp_path)
    first = train(tiny_config(data, tmp_path / "first", epochs=25), progress=False)
    scratch_loss = read_metric(tmp_path / "first", "loss")[0]
    train(tiny_config(data, tmp_path / "second", epochs=1, init_from=str(first)), progress=False)
    assert "init_from" in capsys.readouterr().out
    warm_loss = read_metric(tmp_path / "second", "loss")[0]
    assert warm_loss < 0.2 * scratch_loss  # the same data, the same seed: only the start differs
