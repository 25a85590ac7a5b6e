"""Words over pieces: does a word lexicon help a BPE model? Dev WER of a BPE checkpoint decoded
(1) greedy, (2) as it ships (its own decoding: lexicon-free beam with its piece LM), and (3) with
flashlight's lexicon decoder over a word 3-gram, each word spelled in the model's pieces (its
sentencepiece encoding), the blank as the silence token, on an LM-weight x word-score grid.

    python bench/piece_lexicon.py [--model exp/english/blstm256_bpe/best_lm.pt] \\
        [--word-lm exp/proto/wordlm] [--manifest exp/english/data/dev_so762.jsonl exp/english/data/dev_an4.jsonl]

--word-lm is a folder with lm.arpa and lexicon.txt: the general-English word 3-gram that
recipes/english/local/build_lm.py writes for a character vocabulary, made after the recipe's stage 2 by

    python -c "import sys; from asr.text import Vocab; Vocab.from_texts(open(sys.argv[1]).read().split()) \\
        .save(sys.argv[2])" exp/english/data/lm_text.txt exp/proto/char_vocab.json
    python recipes/english/local/build_lm.py --train-text exp/english/data/lm_text.txt \\
        --vocab exp/proto/char_vocab.json --out-dir exp/proto/wordlm

(20 000 words, 28.9 MB). Dev sets only: this chooses a decoder. Writes results/piece_lexicon.json.
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
from pathlib import Path

import numpy as np

from asr.beam_search import _emitted, _flashlight_decoder
from asr.checkpoint import model_from_payload, read_checkpoint
from asr.decode import DecodeConfig, Hypothesis, make_decoder
from asr.lm import read_lexicon
from asr.manifest import read_manifest
from asr.metrics import error_rates
from asr.text import BLANK_ID
from asr.transcribe import Transcriber
from asr.tuning import decode_all

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "exp" / "english" / "data"


def lexicon_decoder(vocab, lexicon_path: str, lm_path: str, lm_weight: float, word_score: float, beam_size: int):
    """flashlight's lexicon decoder over pieces, loaded once, as a decoder from make_decoder is
    called (asr.tuning.decode_all): log_probs (1, T, V), out_lens (1,) -> [Hypothesis]."""
    from flashlight.lib.text import decoder as flashlight, dictionary

    config = DecodeConfig(decoder="beam", beam_size=beam_size, lm_weight=lm_weight, word_score=word_score)
    tokens = list(vocab.tokens)
    decoder, lm = _flashlight_decoder(flashlight, dictionary, config, tokens, lexicon_path, lm_path, None,
                                      blank=tokens[BLANK_ID], silence=tokens[BLANK_ID])

    def decode(log_probs, out_lens) -> list[Hypothesis]:
        row = np.ascontiguousarray(log_probs[0, : int(out_lens[0])], dtype=np.float32)
        results = decoder.decode(row.ctypes.data, row.shape[0], row.shape[1])
        emitted = _emitted(results[0].tokens, BLANK_ID) if results else []
        return [Hypothesis([t for t, _ in emitted], [f for _, f in emitted])]

    decode.lm = lm  # keep the LM alive as long as the decoder
    return decode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "exp" / "english" / "blstm256_bpe" / "best_lm.pt")
    parser.add_argument("--word-lm", type=Path, default=ROOT / "exp" / "proto" / "wordlm")
    parser.add_argument("--manifest", nargs="+", type=Path,
                        default=[DATA / "dev_so762.jsonl", DATA / "dev_an4.jsonl"])
    parser.add_argument("--lm-weights", default="0.5,1")
    parser.add_argument("--word-scores", default="0,1,2")
    parser.add_argument("--beam-size", type=int, default=50)
    args = parser.parse_args()
    from report import Report

    rep = Report("piece_lexicon")
    missing = [p for p in [args.model, args.word_lm / "lm.arpa", args.word_lm / "lexicon.txt", *args.manifest]
               if not p.is_file()]
    if missing:
        rep.skip(f"missing: {', '.join(map(str, missing))} (run recipes/english/run.sh and build_lm.py first)")
    payload = read_checkpoint(args.model)
    transcriber = Transcriber(model_from_payload(payload, args.model), batch_size=32)
    vocab = transcriber.backend.vocab
    sets = {}
    for path in args.manifest:
        utterances = read_manifest(path)
        sets[path.stem] = ([u.text for u in utterances], transcriber.log_probs([u.audio for u in utterances]))
    words = [w for w in read_lexicon(args.word_lm / "lexicon.txt") if not vocab.unknown_chars(w)]
    rows = []

    def add(decoder: str, lm_weight, word_score, texts_of) -> None:
        row = {"decoder": decoder, "lm_weight": lm_weight, "word_score": word_score}
        refs_all, hyps_all = [], []
        for name, (refs, emissions) in sets.items():
            hyps = texts_of(emissions)
            row[f"{name} WER %"] = round(100 * error_rates(refs, hyps).wer, 2)
            refs_all += refs
            hyps_all += hyps
        row["pooled WER %"] = round(100 * error_rates(refs_all, hyps_all).wer, 2)
        rows.append(row)
        print(row, flush=True)

    add("greedy", None, None, lambda em: decode_all(make_decoder(vocab, DecodeConfig()), em, vocab))
    shipped = transcriber.backend.decoding
    add("shipped: lexicon-free + piece LM", shipped.lm_weight, None,
        lambda em: decode_all(transcriber.backend.decoder(), em, vocab))
    with tempfile.TemporaryDirectory(prefix="piece-lexicon-") as tmp:
        lexicon_path = os.path.join(tmp, "lexicon.txt")
        with open(lexicon_path, "w", encoding="utf-8") as f:
            f.writelines(f"{w} {' '.join(vocab.tokens[i] for i in vocab.encode(w))}\n" for w in words)
        grid = itertools.product([float(v) for v in args.lm_weights.split(",")],
                                 [float(v) for v in args.word_scores.split(",")])
        for lm_weight, word_score in grid:  # the LM loads once per grid point, for every dev set
            decode = lexicon_decoder(vocab, lexicon_path, str(args.word_lm / "lm.arpa"), lm_weight, word_score,
                                     args.beam_size)
            add("word lexicon in pieces + word 3-gram", lm_weight, word_score,
                lambda em: decode_all(decode, em, vocab))
    columns = ["decoder", "lm_weight", "word_score", *[f"{n} WER %" for n in sets], "pooled WER %"]
    rep.write({"model": str(args.model), "word_lm": str(args.word_lm), "lexicon_words": len(words),
               "beam_size": args.beam_size, "rows": rows}, tables=[("Dev WER %", rows, columns)])


if __name__ == "__main__":
    main()
