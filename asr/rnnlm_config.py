"""A recurrent LM's configuration and vocabulary without torch, shared by the network (asr.rnnlm),
its training (asr.rnnlm_train) and the exported runtime (asr.runtime), which reads them from
config.json and runs the network step as rnnlm.onnx in onnxruntime (exported from asr.rnnlm.RNNLM.step by asr.onnx_export).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from asr.errors import ASRError
from asr.text import SPACE

EOS, UNK = "</s>", "<unk>"
EOS_ID, UNK_ID = 0, 1  # the only place these ids are defined
UNITS = ("word", "char")
CELL_NAMES = ("rnn", "lstm", "gru")  # as the acoustic model's (asr.rnnlm.CELLS maps them to torch)


@dataclass(frozen=True)
class RNNLMConfig:
    units: str = "word"  # word | char
    cell: str = "lstm"  # rnn | lstm | gru
    num_layers: int = 2
    hidden_size: int = 256  # also the embedding size
    dropout: float = 0.3  # on embeddings, between layers and before the output layer
    layer_norm: bool = False  # after each recurrent layer

    def __post_init__(self) -> None:
        if self.units not in UNITS:
            raise ASRError(f"LM units must be one of {UNITS}, got {self.units!r}")
        if self.cell not in CELL_NAMES:
            raise ASRError(f"LM cell must be one of {sorted(CELL_NAMES)}, got {self.cell!r}")
        if self.num_layers < 1 or self.hidden_size < 1:
            raise ASRError("LM num_layers and hidden_size must be >= 1")
        if not 0 <= self.dropout < 1:
            raise ASRError(f"LM dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class LMVocab:
    """Symbols to ids: EOS at EOS_ID, UNK at UNK_ID, then the words or characters."""

    units: str
    symbols: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.symbols[:2] != (EOS, UNK) or len(set(self.symbols)) != len(self.symbols):
            raise ASRError(f"LM vocabulary must start with {EOS!r}, {UNK!r} and have no duplicates")
        object.__setattr__(self, "_ids", {s: i for i, s in enumerate(self.symbols)})

    def __len__(self) -> int:
        return len(self.symbols)

    def id(self, symbol: str) -> int:
        return self._ids.get(symbol, UNK_ID)

    def split(self, sentence: str) -> list[str]:
        """A (normalised) sentence's units, without EOS."""
        words = sentence.split()
        return words if self.units == "word" else list(SPACE.join(words))

    def encode(self, sentence: str) -> list[int]:
        """Unit ids followed by EOS."""
        return [self.id(s) for s in self.split(sentence)] + [EOS_ID]

    def decode(self, ids: Iterable[int]) -> str:
        units = [self.symbols[i] for i in ids if i != EOS_ID]
        return " ".join(units) if self.units == "word" else "".join(units)

    @property
    def words(self) -> list[str]:
        """The vocabulary's words (word LMs): what a lexicon decoder may output."""
        return list(self.symbols[2:]) if self.units == "word" else []

    @classmethod
    def build(cls, sentences: Iterable[str], units: str, max_size: int = 0) -> LMVocab:
        """Every unit of the sentences (the `max_size` most frequent, ties alphabetical, if > 0)."""
        counts: Counter[str] = Counter()
        split = cls(units, (EOS, UNK)).split
        for sentence in sentences:
            counts.update(split(sentence))
        ranked = sorted(counts, key=lambda s: (-counts[s], s))
        if max_size > 0:
            ranked = ranked[:max_size]
        return cls(units, (EOS, UNK, *sorted(ranked)))
