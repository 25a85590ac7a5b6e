"""Recurrent LMs: learning, truncated BPTT, shallow fusion in beam search, caching, files, bad text."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from asr import cli
from asr.checkpoint import checkpoint_payload, decoding_section, model_from_payload
from asr.decode import DecodeConfig, make_decoder
from asr.errors import ASRError
from asr.frontend import Cmvn, FeatureConfig
from asr.lm import WORD_BOUNDARY
from asr.fusion import FusedLM
from asr.lm import build_arpa, read_arpa
from asr.model import AcousticModel, ModelConfig
from asr.rnnlm import EOS_ID, LMVocab, RecurrentLM, RNNLM, RNNLMConfig, load_lm, save_lm
from asr.rnnlm_train import (
    RNNLMTrainConfig, batchify, bptt_chunks, ngram_perplexity, read_lm_text, stream_ids, train_rnnlm,
)
from asr.text import Vocab
from torchaudio.models.decoder import ctc_decoder

from .conftest import decoded_text, frame_log_probs

CAT_TEXT = ["THE CAT SAT"] * 30  # the LM's world: a cat, never a hat
FAST = RNNLMTrainConfig(max_epochs=20, batch_size=2, bptt=10, lr=1e-2)


def tiny(units: str, cell: str = "lstm", layer_norm: bool = False) -> RNNLMConfig:
    return RNNLMConfig(units=units, cell=cell, num_layers=1, hidden_size=32, dropout=0.0, layer_norm=layer_norm)


@pytest.fixture(scope="module")
def cat_lms(tmp_path_factory) -> dict[str, RecurrentLM]:
    out = tmp_path_factory.mktemp("lms")
    return {units: train_rnnlm(CAT_TEXT, CAT_TEXT[:2], tiny(units), FAST, out / f"{units}.pt")[0]
            for units in ("char", "word")}


@pytest.mark.parametrize("units", ["char", "word"])
def test_lm_learns_a_deterministic_language_and_samples_it_back(tmp_path, units):
    sentences = ["A B C D E F G H"] * 40
    lm, dev_ppl = train_rnnlm(sentences, sentences[:3], tiny(units), FAST, tmp_path / "lm.pt")
    assert dev_ppl < 1.1  # near-certain of every next symbol (a uniform guess would be ~9 per word)
    assert lm.perplexity(["A B C D E F G H"]) == pytest.approx(dev_ppl)
    assert lm.perplexity(["H G F E D C B A"]) > 5  # and not of a sequence it never saw
    samples = lm.sample(5, torch.Generator().manual_seed(0), temperature=0.5)
    assert samples == ["A B C D E F G H"] * 5


def test_truncated_bptt_carries_the_state_across_chunks_detached(monkeypatch, tmp_path):
    seen: list[tuple[torch.Tensor | None, torch.Tensor]] = []
    forward = RNNLM.forward

    def recording(self, tokens, state=None):
        logits, new_state = forward(self, tokens, state)
        if self.training:
            seen.append((state, new_state))
        return logits, new_state

    monkeypatch.setattr(RNNLM, "forward", recording)
    sentences = ["A B C D"] * 10  # 50 symbols with EOS: 2 columns of 25, chunks of 6 -> 4 chunks
    train_rnnlm(sentences, sentences[:1], tiny("word"), RNNLMTrainConfig(max_epochs=1, batch_size=2, bptt=6),
                tmp_path / "lm.pt")
    assert len(seen) == 4
    assert seen[0][0] is None  # the first chunk starts from zeros
    for (_, previous_out), (state_in, _) in zip(seen, seen[1:]):
        assert not state_in.requires_grad and previous_out.requires_grad  # detached at the chunk boundary
        assert torch.equal(state_in, previous_out.detach())  # but the values carried on


def test_stream_is_cut_into_columns_and_chunks_with_shifted_targets():
    vocab = LMVocab.build(["A B", "C"], "word")
    stream = stream_ids(["A B", "C"] * 3, vocab)  # EOS A B EOS C EOS ... : 16 ids
    assert stream[0] == EOS_ID and len(stream) == 16
    columns = batchify(stream, 3)
    assert columns.shape == (3, 5) and torch.equal(columns[1], stream[5:10])
    chunks = list(bptt_chunks(columns, 3))
    assert [c[0].shape[1] for c in chunks] == [3, 1]
    for inputs, targets in chunks:
        assert torch.equal(inputs[:, 1:], targets[:, :-1])


def _cat_or_hat() -> tuple[Vocab, torch.Tensor]:
    """THE ?AT SAT, where the acoustics slightly prefer H over C."""
    vocab = Vocab.from_texts(["THE CAT SAT HAT"])
    frames = [{c: 1.0} for c in "THE "] + [{"H": 0.55, "C": 0.45}] + [{c: 1.0} for c in "AT SAT"]
    frames = [f for frame in frames for f in (frame, {})]  # a blank frame after each
    return vocab, frame_log_probs(vocab, frames)


def test_character_lm_changes_the_winner_without_a_lexicon(cat_lms):
    vocab, log_probs = _cat_or_hat()
    lm = cat_lms["char"]
    acoustic_only = make_decoder(vocab, DecodeConfig(decoder="beam", rnnlm_weight=0.0), rnnlm=lm)
    fused = make_decoder(vocab, DecodeConfig(decoder="beam", rnnlm_weight=0.5), rnnlm=lm)
    assert decoded_text(acoustic_only, vocab, log_probs) == "THE HAT SAT"
    assert decoded_text(fused, vocab, log_probs) == "THE CAT SAT"


def test_word_lm_changes_the_winner_with_a_lexicon_alone_and_with_an_ngram(cat_lms):
    vocab, log_probs = _cat_or_hat()
    lm = cat_lms["word"]
    lexicon = ["HAT", "SAT", "THE"]  # HAT is spellable, though the recurrent LM calls it <unk>

    def text(**weights) -> str:
        config = DecodeConfig(decoder="beam", **weights)
        arpa = build_arpa(["THE HAT SAT"] * 5) if "lm_weight" in weights else None
        return decoded_text(make_decoder(vocab, config, arpa, lexicon, rnnlm=lm), vocab, log_probs)

    assert text(rnnlm_weight=0.0) == "THE HAT SAT"
    assert text(rnnlm_weight=0.5) == "THE CAT SAT"
    # log-linear with an n-gram that has only seen hats: the stronger of the two wins
    assert text(rnnlm_weight=0.1, lm_weight=2.0) == "THE HAT SAT"
    assert text(rnnlm_weight=1.0, lm_weight=0.1) == "THE CAT SAT"


def test_cached_batched_scores_equal_scoring_each_history_from_scratch(cat_lms):
    """FusedLM's answers (cached per state, computed in batches, in numpy) against the network run
    over each whole history with torch, for the histories a real search asks about."""
    lm = cat_lms["char"]
    vocab = Vocab.from_texts(["THE CAT SAT HAT"])
    to_lm = [lm.vocab.id(t) for t in vocab.tokens]
    histories: dict[object, tuple[int, ...]] = {}
    asked = []

    class Recording(FusedLM):
        def start(self, start_with_nothing=False):
            state = super().start(start_with_nothing)
            histories[state] = ()
            return state

        def score(self, state, unit):
            child, score = super().score(state, unit)
            histories[child] = histories[state] + (to_lm[unit],)
            asked.append((histories[state], to_lm[unit], score))
            return child, score

    recording = Recording(lm.make_step(), to_lm, weight=1.0)
    torch.manual_seed(0)
    log_probs = torch.randn(1, 12, len(vocab)).log_softmax(-1)
    tokens = [WORD_BOUNDARY if t == " " else t for t in vocab.tokens]
    search = ctc_decoder(lexicon=None, tokens=tokens, lm=recording, beam_size=8, lm_weight=1.0,
                         blank_token=vocab.tokens[0], sil_token=WORD_BOUNDARY)
    search(log_probs, torch.tensor([12]))
    assert len(asked) > 50 and recording.batches < recording.steps  # real batching happened
    for history, unit, score in asked[:: max(1, len(asked) // 60)]:
        tokens_in = torch.tensor([[EOS_ID, *history]])
        with torch.no_grad():
            logits, _ = lm.model(tokens_in)
        expected = torch.log_softmax(logits[0, -1], dim=-1)[unit]
        assert score == pytest.approx(float(expected), abs=1e-4)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_the_decoding_step_matches_the_torch_network(cell):
    torch.manual_seed(0)
    lm = RecurrentLM(RNNLM(tiny("word", cell, layer_norm=True), 12).eval(), LMVocab("word", ("</s>", "<unk>", *"ABCDEFGHIJ")))
    tokens, state = torch.tensor([3, 0, 7]), torch.randn(1, lm.model.parts, 3, 32)
    expected, expected_state = lm.step(tokens, state)
    step = lm.make_step()
    got, got_state = step(tokens.numpy(), state.permute(2, 0, 1, 3).numpy().copy())
    assert torch.allclose(torch.from_numpy(got), expected, atol=1e-5)
    assert torch.allclose(torch.from_numpy(got_state), expected_state.permute(2, 0, 1, 3), atol=1e-5)


def test_lm_file_and_checkpoint_round_trip(cat_lms, tmp_path):
    lm = cat_lms["word"]
    save_lm(tmp_path / "lm.pt", lm)
    loaded = load_lm(tmp_path / "lm.pt")
    assert loaded.vocab == lm.vocab and loaded.config == lm.config
    assert loaded.perplexity(["THE CAT SAT"]) == pytest.approx(lm.perplexity(["THE CAT SAT"]), rel=1e-6)
    vocab = Vocab.from_texts(["THE CAT SAT HAT"])
    features = FeatureConfig()
    model = AcousticModel(ModelConfig(num_layers=1, hidden_size=8), features.n_mels, len(vocab))
    cmvn = Cmvn(mean=(0.0,) * features.n_mels, std=(1.0,) * features.n_mels)
    config = DecodeConfig(decoder="beam", rnnlm_weight=0.4, word_score=1.5)
    payload = checkpoint_payload(model, features, cmvn, vocab, decoding=decoding_section(config, rnnlm=lm))
    restored = model_from_payload(payload)
    assert restored.decoding == config and restored.rnnlm.vocab == lm.vocab
    assert restored.rnnlm.perplexity(["THE CAT SAT"]) == pytest.approx(lm.perplexity(["THE CAT SAT"]), rel=1e-6)
    _, log_probs = _cat_or_hat()
    assert decoded_text(restored.decoder(), vocab, log_probs) == "THE CAT SAT"
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ASRError, match="junk.pt: not a readable LM file"):
        load_lm(tmp_path / "junk.pt")


def test_interrupted_training_resumes_to_the_same_model(tmp_path):
    sentences = ["A B C", "B C A", "C A B D"] * 8
    train_config = RNNLMTrainConfig(max_epochs=3, batch_size=2, bptt=5, patience=5)
    config = RNNLMConfig(units="word", num_layers=1, hidden_size=16, dropout=0.2)
    whole, _ = train_rnnlm(sentences, sentences[:3], config, train_config, tmp_path / "whole.pt")

    def stop_after_two(epoch_log):
        if epoch_log.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_rnnlm(sentences, sentences[:3], config, train_config, tmp_path / "cut.pt", log=stop_after_two)
    assert (tmp_path / "cut.pt.last").is_file()
    epochs = []
    resumed, _ = train_rnnlm(sentences, sentences[:3], config, train_config, tmp_path / "cut.pt", resume=True,
                             log=lambda e: epochs.append(e.epoch))
    assert epochs == [3] and not (tmp_path / "cut.pt.last").exists()
    for name, weight in whole.model.state_dict().items():
        assert torch.equal(weight, resumed.model.state_dict()[name]), name


def test_ngram_perplexity_agrees_with_kenlm(tmp_path):
    kenlm = pytest.importorskip("flashlight.lib.text.decoder.kenlm")
    from flashlight.lib.text.dictionary import Dictionary

    train = ["THE CAT SAT", "THE DOG SAT", "A CAT RAN", "THE CAT RAN FAST"]
    dev = ["THE DOG RAN", "A BIRD SAT"]  # BIRD is unknown
    (tmp_path / "lm.arpa").write_text(build_arpa(train, 3))
    words = ["<unk>", "</s>", "<s>", "THE", "CAT", "SAT", "DOG", "A", "RAN", "FAST", "BIRD"]
    (tmp_path / "words.txt").write_text("\n".join(words) + "\n")
    model = kenlm.KenLM(str(tmp_path / "lm.arpa"), Dictionary(str(tmp_path / "words.txt")))
    total, count = 0.0, 0
    for sentence in dev:
        state = model.start(False)
        for word in sentence.split():
            state, score = model.score(state, words.index(word))
            total, count = total + score, count + 1
        total, count = total + model.finish(state)[1], count + 1
    expected = math.exp(-total * math.log(10) / count)
    assert ngram_perplexity(read_arpa(tmp_path / "lm.arpa"), dev) == pytest.approx(expected, rel=1e-4)


def _cli_error(capsys, *argv: str) -> str:
    assert cli.main(list(argv)) == cli.EXIT_ERROR
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_bad_lm_text_gives_one_line_errors(tmp_path, capsys):
    out = str(tmp_path / "out")
    (tmp_path / "empty.txt").write_text("\n  \n")
    assert "empty.txt: no sentences" in _cli_error(capsys, "lm", "--type", "lstm", "--text", str(tmp_path / "empty.txt"),
                                                   "--out-dir", out)
    (tmp_path / "latin1.txt").write_bytes("THE CAT\nCAF\xc9 AU LAIT\n".encode("latin-1"))
    message = _cli_error(capsys, "lm", "--type", "lstm", "--text", str(tmp_path / "latin1.txt"), "--out-dir", out)
    assert "latin1.txt:2: not UTF-8" in message
    Vocab.from_texts(["THE CAT SAT"]).save(tmp_path / "vocab.json")
    (tmp_path / "foreign.txt").write_text("THE CAT SAT\nTHE DOG SAT\n")
    message = _cli_error(capsys, "lm", "--type", "lstm", "--text", str(tmp_path / "foreign.txt"),
                         "--vocab", str(tmp_path / "vocab.json"), "--out-dir", out)
    assert "foreign.txt:2:" in message and "'DGO'" in message
    assert "sample needs --model" in _cli_error(capsys, "lm", "sample")
    with pytest.raises(ASRError, match="no such LM file"):
        load_lm(tmp_path / "missing.pt")
    assert not Path(out, "rnnlm.pt").exists()
    assert read_lm_text(tmp_path / "foreign.txt") == ["THE CAT SAT", "THE DOG SAT"]


def test_lm_command_trains_reports_both_perplexities_and_samples(tmp_path, capsys):
    text = tmp_path / "corpus.txt"
    text.write_text("the cat sat\nthe dog sat\na cat ran\n" * 20)
    out = tmp_path / "lm"
    assert cli.main(["lm", "--type", "lstm", "--units", "char", "--text", str(text), "--out-dir", str(out),
                     "--epochs", "2", "--hidden-size", "16", "--layers", "1", "--cell", "gru", "--layer-norm"]) == 0
    printed = capsys.readouterr().out
    assert "epoch 2:" in printed and "recurrent" in printed and "3-gram on the same text" in printed
    import json

    summary = json.loads((out / "rnnlm.json").read_text())
    assert summary["train_sentences"] == 57 and summary["dev_sentences"] == 3  # every 20th held out
    assert summary["dev_ppl"] > 1 and summary["ngram3_dev_ppl"] > 1 and len(summary["epochs"]) == 2
    assert load_lm(out / "rnnlm.pt").config.cell == "gru"
    assert cli.main(["lm", "sample", "--model", str(out / "rnnlm.pt"), "--count", "3"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3


def test_lm_command_reads_a_config_file_that_its_options_override(tmp_path, capsys):
    """--config gives every setting (the dataclasses' defaults for what it leaves out); an option
    overrides its key; a misspelt key is one error naming the file and the key."""
    import json

    text = tmp_path / "corpus.txt"
    text.write_text("the cat sat\nthe dog sat\na cat ran\n" * 20)
    config = tmp_path / "lm.yaml"
    config.write_text("model:\n  units: char\n  cell: gru\n  hidden_size: 24\n  num_layers: 1\n"
                      "train:\n  max_epochs: 3\n  batch_size: 4\n")
    out = tmp_path / "lm"
    assert cli.main(["lm", "--type", "lstm", "--config", str(config), "--text", str(text), "--out-dir", str(out),
                     "--hidden-size", "16", "--epochs", "1"]) == 0
    summary = json.loads((out / "rnnlm.json").read_text())
    assert summary["config"] == {"units": "char", "cell": "gru", "num_layers": 1, "hidden_size": 16,
                                 "dropout": 0.3, "layer_norm": False}
    assert summary["train_config"]["batch_size"] == 4 and summary["train_config"]["max_epochs"] == 1
    assert load_lm(out / "rnnlm.pt").config.hidden_size == 16
    capsys.readouterr()
    config.write_text("model:\n  hiden_size: 24\n")
    message = _cli_error(capsys, "lm", "--type", "lstm", "--config", str(config), "--text", str(text),
                         "--out-dir", str(tmp_path / "lm2"))
    assert str(config) in message and "hiden_size" in message


def test_the_shipped_lm_config_is_the_dataclasses_defaults_spelt_out():
    from asr.config import load_config, to_dict
    from asr.rnnlm_train import RNNLMRunConfig

    assert to_dict(load_config(RNNLMRunConfig, Path(__file__).resolve().parents[1] / "conf" / "rnnlm_word.yaml")) == to_dict(RNNLMRunConfig())


def test_fused_beam_search_runs_the_lm_steps_with_one_blas_thread(cat_lms, monkeypatch):
    from threadpoolctl import threadpool_info

    import asr.rnnlm

    threads_seen = []
    step = asr.rnnlm.TorchStep.__call__

    def recording(self, tokens, states):
        threads_seen.append({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
        return step(self, tokens, states)

    monkeypatch.setattr(asr.rnnlm.TorchStep, "__call__", recording)
    vocab = Vocab.from_texts(["THE CAT SAT HAT"])
    decode = make_decoder(vocab, DecodeConfig(decoder="beam", beam_size=5, rnnlm_weight=0.5), rnnlm=cat_lms["char"])
    torch.manual_seed(0)
    decode((3 * torch.randn(1, 20, len(vocab))).log_softmax(-1), torch.tensor([20]))
    assert threads_seen and all(seen <= {1} for seen in threads_seen)


def test_batched_and_one_at_a_time_scoring_find_the_same_hypothesis(cat_lms):
    lm = cat_lms["char"]
    vocab = Vocab.from_texts(["THE CAT SAT HAT"])
    to_lm = [lm.vocab.id(t) for t in vocab.tokens]
    tokens = [WORD_BOUNDARY if t == " " else t for t in vocab.tokens]
    torch.manual_seed(1)
    log_probs = (3 * torch.randn(2, 30, len(vocab))).log_softmax(-1)
    found = {}
    for batch in (True, False):
        fused = FusedLM(lm.make_step(), to_lm, weight=0.7, word_ends=[vocab.separator_id], word_score=0.5, batch=batch)
        search = ctc_decoder(lexicon=None, tokens=tokens, lm=fused, beam_size=10, lm_weight=1.0,
                             blank_token=vocab.tokens[0], sil_token=WORD_BOUNDARY)
        results = search(log_probs, torch.tensor([30, 25]))
        found[batch] = [(r[0].tokens.tolist(), round(r[0].score, 3)) for r in results]
        assert fused.steps > 0
    assert found[True] == found[False]


@pytest.mark.an4
def test_tune_lm_attaches_a_recurrent_lm_that_transcribe_then_uses(overfit_model, tmp_path):
    from asr.checkpoint import load_model

    from .conftest import run_asr

    train = str(overfit_model.parents[1] / "train.jsonl")
    trained = run_asr("lm", "--type", "lstm", "--manifest", train, "--dev-manifest", train, "--out-dir",
                      str(tmp_path / "lm"), "--epochs", "3", "--layers", "1", "--hidden-size", "32")
    assert trained.returncode == 0, trained.stderr
    out = tmp_path / "model_rnnlm.pt"
    tuned = run_asr("tune-lm", "--model", str(overfit_model), "--manifest", train, "--rnnlm",
                    str(tmp_path / "lm" / "rnnlm.pt"), "--rnnlm-weights", "0.3,0.6", "--word-scores", "0,1",
                    "--beam-size", "10", "--out", str(out))
    assert tuned.returncode == 0, tuned.stderr
    assert tuned.stdout.count("rnnlm_weight=") == 4 + 1  # the grid, then the best line
    loaded = load_model(out)
    assert loaded.rnnlm is not None and loaded.lm_arpa is None and loaded.decoding.decoder == "beam"
    assert loaded.decoding.beam_size == 10
    from asr.manifest import read_manifest

    first = read_manifest(train)[0]
    result = run_asr("transcribe", "--model", str(out), first.audio)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\t", 1)[1].strip() == first.text
    exported = run_asr("export", "--model", str(out), "--onnx", str(tmp_path / "onnx"))  # the LM goes along
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "onnx" / "rnnlm.onnx").is_file()
    result = run_asr("transcribe", "--model", str(tmp_path / "onnx"), first.audio)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\t", 1)[1].strip() == first.text


def test_ngram_lm_can_be_built_from_a_text_file_too(tmp_path, capsys):
    text = tmp_path / "domain.txt"
    text.write_text("Turn the lights on.\nturn the lights off\n\n")
    assert cli.main(["lm", "--text", str(text), "--out-dir", str(tmp_path / "lm")]) == 0
    unigrams = read_arpa(tmp_path / "lm" / "lm.arpa")[1]
    assert {("TURN",), ("LIGHTS",), ("ON",), ("OFF",)} <= set(unigrams)
    assert "from 2 sentences" in capsys.readouterr().err
    assert "one of --manifest or --text" in _cli_error(capsys, "lm", "--out-dir", str(tmp_path / "x"))
