"""Training a recurrent LM (asr.rnnlm's network) on text: `asr lm --type lstm`.

Truncated backpropagation through time (TBPTT): the text stream (sentences joined end to end, each
followed by EOS) is cut into `batch_size` parallel columns, read `bptt` symbols at a time, the
recurrent state carried from one chunk to the next and detached at the boundary. The learning rate
halves after an epoch that does not improve dev perplexity; training stops after `patience` such
epochs, and resumes from the state written after every epoch.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from asr.atomic import atomic_write
from asr.errors import ASRError
from asr.rnnlm import RNNLM, RecurrentLM, load_lm, read_lm_file, save_lm
from asr.rnnlm_config import EOS, EOS_ID, UNK, LMVocab, RNNLMConfig
from asr.text import Vocab, normalise_text


@dataclass(frozen=True)
class RNNLMTrainConfig:
    bptt: int = 0  # symbols per truncated-BPTT chunk; 0: 35 for words, 100 for characters
    batch_size: int = 16  # parallel columns of the text stream
    lr: float = 2e-3  # Adam; halved after an epoch that does not improve dev perplexity
    max_epochs: int = 30
    patience: int = 3  # stop after this many epochs without a better dev perplexity
    clip: float = 0.5  # gradient norm clipping
    weight_decay: float = 1e-6
    max_vocab: int = 0  # keep the most frequent words only (0: all); word LMs only
    seed: int = 1

    def chunk(self, units: str) -> int:
        return self.bptt or (35 if units == "word" else 100)


@dataclass(frozen=True)
class RNNLMRunConfig:
    """A recurrent LM's whole config file (`asr lm --type lstm --config conf/rnnlm_word.yaml`):
    the network (saved in rnnlm.pt) and how it trains (saved in the resume state and rnnlm.json)."""

    model: RNNLMConfig = RNNLMConfig()
    train: RNNLMTrainConfig = RNNLMTrainConfig()



# ---------------------------------------------------------------------------------------------
# Vocabulary and text


def read_lm_text(path: str | os.PathLike, vocab: Vocab | None = None) -> list[str]:
    """Sentences of a text file (one a line, UTF-8), normalised as transcripts are; blank lines skipped.

    Raises ASRError naming the file (and line) when it cannot be read, is not UTF-8, holds no
    sentence, or (given the acoustic model's `vocab`) uses a character that vocabulary lacks.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise ASRError(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise ASRError(f"{path}:{line}: not UTF-8 text (byte {data[err.start]:#04x} at offset {err.start}); "
                       "convert it, e.g. with iconv -t UTF-8") from None
    sentences = []
    for line_no, line in enumerate(text.splitlines(), 1):
        sentence = normalise_text(line)
        if not sentence:
            continue
        if vocab is not None:
            check_characters(sentence, vocab, f"{path}:{line_no}")
        sentences.append(sentence)
    if not sentences:
        raise ASRError(f"{path}: no sentences (the file is empty or holds no letters or digits)")
    return sentences


def check_characters(sentence: str, vocab: Vocab, where: str) -> None:
    """Raise ASRError at `where` if the sentence has a character the acoustic vocabulary cannot output."""
    foreign = sorted(vocab.unknown_chars(sentence))
    if foreign:
        raise ASRError(f"{where}: character(s) {''.join(foreign)!r} not in the model's vocabulary, "
                       "so the recogniser can never output them; remove them from the text")


def stream_ids(sentences: Iterable[str], vocab: LMVocab) -> torch.Tensor:
    """The text stream: EOS, then each sentence's ids and its EOS. (N,) int64."""
    ids = [EOS_ID]
    for sentence in sentences:
        ids += vocab.encode(sentence)
    return torch.tensor(ids, dtype=torch.long)


def batchify(stream: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Cut a stream (N,) into batch_size contiguous columns: (B, N // B); the remainder is dropped."""
    batch_size = max(1, min(batch_size, len(stream) // 2))
    length = len(stream) // batch_size
    return stream[: length * batch_size].view(batch_size, length)


def bptt_chunks(columns: torch.Tensor, bptt: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """(inputs, targets) chunks of at most bptt steps along the columns: (B, L) each, targets shifted by one."""
    for start in range(0, columns.shape[1] - 1, bptt):
        length = min(bptt, columns.shape[1] - 1 - start)
        yield columns[:, start:start + length], columns[:, start + 1:start + 1 + length]


# ---------------------------------------------------------------------------------------------
# Training


@dataclass
class EpochLog:
    epoch: int
    train_ppl: float  # per symbol, with dropout, over the epoch's chunks
    dev_ppl: float  # per word
    lr: float
    seconds: float


def train_epoch(model: RNNLM, columns: torch.Tensor, bptt: int, optimizer: torch.optim.Optimizer,
                clip: float) -> float:
    """One pass of truncated BPTT over batchified text (B, N); returns the per-symbol perplexity.

    The state of each chunk starts where the previous chunk's ended, detached from its graph.
    """
    model.train()
    total, count, state = 0.0, 0, None
    for inputs, targets in bptt_chunks(columns, bptt):
        if state is not None:
            state = state.detach()
        logits, state = model(inputs, state)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        total += loss.item() * targets.numel()
        count += targets.numel()
    return math.exp(total / max(count, 1))


def train_rnnlm(
    train_sentences: Sequence[str],
    dev_sentences: Sequence[str],
    config: RNNLMConfig,
    train_config: RNNLMTrainConfig,
    out_path: str | os.PathLike,
    resume: bool = False,
    log: Callable[[EpochLog], None] | None = None,
) -> tuple[RecurrentLM, float]:
    """Train on the sentences, keep the best dev-perplexity model at out_path; returns it and its dev ppl.

    The training state after every epoch is written to `<out_path>.last` (resume=True continues
    from it); it is removed when training ends.
    """
    last_path = Path(str(out_path) + ".last")
    torch.manual_seed(train_config.seed)
    random.seed(train_config.seed)
    vocab = LMVocab.build(train_sentences, config.units, train_config.max_vocab if config.units == "word" else 0)
    model = RNNLM(config, len(vocab))
    optimizer = torch.optim.Adam(model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay)
    start_epoch, best_ppl, stale, lr = 1, math.inf, 0, train_config.lr
    if resume and last_path.exists():
        state = read_lm_file(last_path)
        lm = RecurrentLM.from_dict(state, last_path)
        if lm.config != config or lm.vocab != vocab or state.get("train_config") != asdict(train_config):
            raise ASRError(f"{last_path}: was trained with other settings or text; remove it to start afresh")
        model = lm.model
        optimizer = torch.optim.Adam(model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay)
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, best_ppl, stale, lr = state["epoch"] + 1, state["best_ppl"], state["stale"], state["lr"]
        torch.set_rng_state(state["rng"])
    bptt = train_config.chunk(config.units)
    columns = batchify(stream_ids(train_sentences, vocab), train_config.batch_size)
    for epoch in range(start_epoch, train_config.max_epochs + 1):
        if stale >= train_config.patience:
            break
        started = time.monotonic()
        for group in optimizer.param_groups:
            group["lr"] = lr
        train_ppl = train_epoch(model, columns, bptt, optimizer, train_config.clip)
        model.eval()
        lm = RecurrentLM(model, vocab)
        dev_ppl = lm.perplexity(dev_sentences)
        if dev_ppl < best_ppl:
            best_ppl, stale = dev_ppl, 0
            save_lm(out_path, lm, dev_ppl=dev_ppl, epoch=epoch)
        else:
            stale, lr = stale + 1, lr / 2
        save_lm(last_path, lm, optimizer=optimizer.state_dict(), epoch=epoch, best_ppl=best_ppl, stale=stale, lr=lr,
                rng=torch.get_rng_state(), train_config=asdict(train_config))
        if log is not None:
            log(EpochLog(epoch, train_ppl, dev_ppl, lr, time.monotonic() - started))
    last_path.unlink(missing_ok=True)
    if not os.path.isfile(out_path):
        raise ASRError(f"{out_path}: no epoch was trained (max_epochs {train_config.max_epochs})")
    return load_lm(out_path), best_ppl


def split_dev(sentences: Sequence[str], fraction: float = 0.05) -> tuple[list[str], list[str]]:
    """(train, dev): every round(1 / fraction)-th sentence held out for dev, the rest for training."""
    every = max(2, round(1 / fraction))
    dev = [s for i, s in enumerate(sentences) if i % every == every - 1]
    train = [s for i, s in enumerate(sentences) if i % every != every - 1]
    if not dev or not train:
        raise ASRError("the LM text is too short to hold out dev sentences: give --dev-manifest or more text")
    return train, dev


def ngram_perplexity(arpa_tables: list[dict[tuple[str, ...], tuple[float, float]]], sentences: Sequence[str]) -> float:
    """Per-word perplexity (EOS counted) of an ARPA back-off model (tables from asr.lm.read_arpa),
    in natural-log units as the recurrent LMs'; unknown words score as <unk>."""
    order = len(arpa_tables) - 1
    total, words = 0.0, 0
    for sentence in sentences:
        tokens = ["<s>"] + [w if (w,) in arpa_tables[1] else UNK for w in sentence.split()] + [EOS]
        for i in range(1, len(tokens)):
            total += _backoff_log10(arpa_tables, tuple(tokens[max(0, i - order + 1):i + 1]))
            words += 1
    return math.exp(-total * math.log(10) / max(words, 1))


def _backoff_log10(tables, gram: tuple[str, ...]) -> float:
    if gram in tables[len(gram)]:
        return tables[len(gram)][gram][0]
    if len(gram) == 1:
        return tables[1].get((UNK,), (-99.0, 0.0))[0]
    backoff = tables[len(gram) - 1].get(gram[:-1], (0.0, 0.0))[1]
    return backoff + _backoff_log10(tables, gram[1:])


def train_and_report(
    config: RNNLMConfig,
    train_config: RNNLMTrainConfig,
    out_dir: str | os.PathLike,
    sentences: Sequence[str],
    dev: Sequence[str] | None = None,
    resume: bool = False,
    log: Callable[[str], None] = print,
    ngram_order: int = 3,
) -> dict[str, Any]:
    """`asr lm --type lstm`: train on the sentences, write out_dir/rnnlm.pt and out_dir/rnnlm.json
    (the per-epoch log, and the dev perplexity of the LM and of an n-gram built from the same
    sentences, both per word); returns that summary.

    dev: sentences for early stopping; None holds out every 20th training sentence.
    """
    from asr.lm import build_arpa, read_arpa  # the n-gram baseline, on the same text

    train, dev = (list(sentences), list(dev)) if dev else split_dev(sentences)
    if not dev:
        raise ASRError("the dev text holds no sentences")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    units = sum(len(LMVocab(config.units, (EOS, UNK)).split(s)) + 1 for s in train)
    log(f"recurrent LM: {config.units} {config.cell} {config.num_layers}x{config.hidden_size}"
        f"{' + layer norm' if config.layer_norm else ''}, {len(train)} training sentences ({units} {config.units}s "
        f"with EOS), {len(dev)} dev sentences")
    epochs: list[dict[str, float]] = []

    def on_epoch(e: EpochLog) -> None:
        epochs.append(asdict(e))
        log(f"epoch {e.epoch}: train ppl {e.train_ppl:.2f} per {config.units}, dev ppl {e.dev_ppl:.2f} per word, "
            f"lr {e.lr:g}, {e.seconds:.1f} s")

    lm, dev_ppl = train_rnnlm(train, dev, config, train_config, out_dir / "rnnlm.pt", resume, on_epoch)
    _, words, oov = lm.sentence_log_prob(dev)
    arpa_path = out_dir / f".ngram{ngram_order}.arpa.tmp"
    arpa_path.write_text(build_arpa(train, ngram_order), encoding="utf-8")
    try:
        ngram_ppl = ngram_perplexity(read_arpa(arpa_path), dev)
    finally:
        arpa_path.unlink()
    summary = {
        "units": config.units, "config": asdict(config), "train_config": asdict(train_config),
        "train_sentences": len(train), "dev_sentences": len(dev), "vocab_size": len(lm.vocab),
        "dev_words": words, "dev_oov_words": oov, "dev_ppl": dev_ppl, f"ngram{ngram_order}_dev_ppl": ngram_ppl,
        "epochs": epochs,
    }
    with atomic_write(out_dir / "rnnlm.json") as f:
        json.dump(summary, f, indent=2)
    log(f"dev perplexity per word ({words} words with EOS, {oov} out of vocabulary): recurrent {dev_ppl:.2f}, "
        f"{ngram_order}-gram on the same text {ngram_ppl:.2f} -> {out_dir / 'rnnlm.pt'}")
    return summary
