"""asr.decode.greedy_decode on hand-made log-prob matrices with a known best path."""

import math

import torch

from asr.decode import greedy_decode
from asr.text import BLANK_ID, Vocab

V = 4  # 0 = blank, 1 = a, 2 = b, 3 = c
A, B, C = 1, 2, 3


def log_probs_for(path: list[int], vocab_size: int = V) -> torch.Tensor:
    """(T, V) log-probs whose per-frame argmax is `path`: 0.7 on the best token, the rest shared."""
    rest = math.log(0.3 / (vocab_size - 1))
    out = torch.full((len(path), vocab_size), rest)
    out[torch.arange(len(path)), torch.tensor(path)] = math.log(0.7)
    return out


def decode_one(path: list[int], length: int | None = None) -> list[int]:
    log_probs = log_probs_for(path).unsqueeze(0)  # (1, T, V)
    lens = torch.tensor([len(path) if length is None else length])
    return greedy_decode(log_probs, lens)[0]


def test_repeats_collapse():
    assert decode_one([A, A, B]) == [A, B]
    assert decode_one([A, A, A, B, B, C]) == [A, B, C]


def test_blank_between_repeats_keeps_both():
    assert decode_one([A, BLANK_ID, A]) == [A, A]
    assert decode_one([A, A, BLANK_ID, BLANK_ID, A, B, B]) == [A, A, B]


def test_blanks_dropped_anywhere():
    assert decode_one([BLANK_ID, A, BLANK_ID, B, BLANK_ID]) == [A, B]


def test_first_frame_non_blank_is_kept():
    assert decode_one([C]) == [C]


def test_all_blank_gives_empty_output():
    assert decode_one([BLANK_ID] * 6) == []


def test_frames_past_out_lens_are_ignored():
    assert decode_one([A, BLANK_ID, B, C, C], length=2) == [A]
    assert decode_one([A, A, A], length=1) == [A]
    assert decode_one([A, B], length=0) == []


def test_batch_of_two_with_different_lengths():
    long_path = [A, A, BLANK_ID, B, B, C]
    short_path = [B, BLANK_ID, B]
    garbage = [C, A, C]  # non-blank padding frames for the short utterance: must be ignored
    log_probs = torch.stack([log_probs_for(long_path), log_probs_for(short_path + garbage)])  # (2, 6, 4)
    hyps = greedy_decode(log_probs, torch.tensor([6, 3]))
    assert hyps == [[A, B, C], [B, B]]


def test_only_argmax_matters():
    scores = torch.tensor([[[0.0, 5.0, 1.0], [0.0, 5.0, 1.0], [9.0, 0.0, 0.0], [0.0, 1.0, 2.0]]])  # (1, 4, 3)
    assert greedy_decode(scores, torch.tensor([4])) == [[1, 2]]


def test_other_blank_id():
    # blank is the last token here: 3; token 0 is an ordinary symbol
    assert greedy_decode(log_probs_for([0, 0, 3, 0, 1]).unsqueeze(0), torch.tensor([5]), blank_id=3) == [[0, 0, 1]]


def test_decoded_ids_map_to_text():
    vocab = Vocab.from_texts(["AB"])  # <blank>, ' ', 'A', 'B'
    sp, a, b = vocab.encode(" AB")
    path = [a, a, BLANK_ID, a, sp, sp, b, BLANK_ID]
    ids = greedy_decode(log_probs_for(path).unsqueeze(0), torch.tensor([len(path)]))[0]
    assert vocab.decode(ids) == "AA B"
