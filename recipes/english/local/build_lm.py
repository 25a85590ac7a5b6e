"""The general-English recipe's beam-search LM: a word 3-gram with the lexicon of a character
model, or an n-gram over the pieces of a BPE model (open vocabulary: no lexicon).

    python recipes/english/local/build_lm.py --train-text exp/english/data/lm_text.txt \\
        --out-dir exp/english/data/char/lm_general [--vocab exp/english/data/char/vocab.json] \\
        [--vocab-size 20000] [--max-ngrams 1150000] [--lambda 0.6] \\
        [--dev exp/english/data/dev_so762.jsonl exp/english/data/dev_an4.jsonl]

The LM interpolates (asr.lm_edit.mix, SRILM's -mix-lm) two models in the vocabulary's units:
  - in-domain: the Kneser-Ney model of the training transcripts (asr.lm.build_arpa, what
    `asr lm` builds: a word 3-gram, or a piece 6-gram for BPE), with weight --lambda;
  - general: pocketsphinx's US-English 3-gram (en-us.lm.bin in the pocketsphinx wheel, BSD
    licence; read with asr.sphinx_lm), its words upper-cased, restricted to words the model can
    spell (--vocab's characters) and to the --vocab-size most probable of them plus every
    training word (asr.lm_edit.restrict_vocab). For a character model that word 3-gram itself;
    for a BPE model a piece 6-gram of --sentences sentences drawn from it (asr.arpa.sample_sentences,
    seed --seed) and split into the model's pieces, which carries its words' spellings and their
    neighbours into units the lexicon-free decoder reads. Then pruned to --max-ngrams n-grams
    above the unigrams by relative entropy (asr.lm_edit.prune_ngrams).
Writes in --out-dir: lm.arpa, lexicon.txt (character models; the format `asr lm` writes), NOTICE
(the general LM's origin and licence, to ship beside it) and lm_info.json (settings, sizes, dev
perplexities: per word, or per piece for BPE).

Comma-separated values for --vocab-size, --max-ngrams or --lambda make a sweep: every
combination is scored on the --dev manifests (their transcripts only), a table is printed, and
the combination with the lowest dev perplexity (all dev sets pooled, OOVs scored as <unk>, as
KenLM does) whose lm.arpa + lexicon.txt fit in --max-mb and whose pooled dev OOV rate is at most
--max-oov-rate is written. (Perplexity alone favours small vocabularies: it barely charges
for an OOV, which a lexicon decoder can never output.) The word defaults are the pick of such a
sweep on the recipe's dev sets (20 000 words, 1.15 M n-grams, lambda 0.6: 29 MB, pooled dev
perplexity 63.5); the piece defaults are recipes/english/RESULTS.md's.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from asr.arpa import BackoffLM, Perplexity, arpa_text, parse_arpa, perplexity, predicted_mask, sample_sentences
from asr.atomic import write_text_atomically
from asr.errors import ASRError
from asr.lm import BOS, EOS, PIECE_LM_ORDER, UNK, build_arpa, lexicon_text, piece_sentences
from asr.lm_edit import mix, ngram_scores, prune_ngrams, restrict_vocab
from asr.manifest import read_manifest
from asr.text import Vocab

ORDER = 3
DEFAULT_VOCAB_SIZE = 20000
DEFAULT_MAX_NGRAMS = 1150000
DEFAULT_LAMBDA = 0.6
PIECE_DEFAULTS = {"vocab_size": "20000", "max_ngrams": "300000", "lam": "0.6"}  # BPE: see recipes/english/RESULTS.md
DEFAULT_SENTENCES = 100000  # drawn from the general word LM for a piece LM
MAX_OOV_RATE = 0.002  # pooled dev OOVs: each is a sure error for a lexicon decoder
MAX_MB = 30.0  # lm.arpa + lexicon.txt, uncompressed: the bundle may grow by at most 60 MB
MB = 1_000_000
SPECIAL = (BOS, EOS, UNK)


def sphinx_lm_path() -> Path:
    """en-us.lm.bin inside the installed pocketsphinx package."""
    try:
        import pocketsphinx
    except ImportError as err:
        raise ASRError(f"the general LM comes from the pocketsphinx package: pip install pocketsphinx ({err})") \
            from None
    return Path(pocketsphinx.get_model_path()) / "en-us" / "en-us.lm.bin"


def sphinx_licence() -> str:
    """The Carnegie Mellon University copyright notice of the pocketsphinx wheel's LICENSE file
    (the part that covers its code and models, before the notices of bundled third-party code)."""
    dist = metadata.distribution("pocketsphinx")
    files = [f for f in dist.files or () if f.name.upper().startswith("LICENSE")]
    if not files:
        raise ASRError("the installed pocketsphinx has no LICENSE file to copy its notice from")
    text = Path(dist.locate_file(files[0])).read_text(encoding="utf-8")
    return text.split("\nWebRTC VAD code")[0].strip() + "\n"


def notice(source: Path, version: str, pieces: dict | None) -> str:
    if pieces is None:
        made = ("This LM (lm.arpa) interpolates a 3-gram of the recipe's training transcripts with a vocabulary-\n"
                "restricted, pruned copy of the US-English 3-gram")
    else:
        made = (f"This LM (lm.arpa) interpolates a {pieces['order']}-gram of the BPE pieces of the recipe's training\n"
                f"transcripts with a pruned {pieces['order']}-gram of the pieces of {pieces['sentences']} sentences drawn "
                "from a\nvocabulary-restricted copy of the US-English 3-gram")
    return (
        f"{made} en-us.lm.bin of pocketsphinx {version}\n"
        f"(https://pypi.org/project/pocketsphinx/, file {source.name}), distributed under the following licence (BSD 2-clause):\n\n"
        + sphinx_licence()
    )


def upper_case(lm: BackoffLM) -> BackoffLM:
    """The model with its words upper-cased (the <...> tags as they are)."""
    words = [w if w.startswith("<") else w.upper() for w in lm.words]
    return BackoffLM.from_arrays(words, lm.grams, lm.logp, lm.logbo)


def read_general_lm(source: Path) -> BackoffLM:
    """pocketsphinx's 3-gram at `source` (en-us.lm.bin), its words upper-cased."""
    from asr.sphinx_lm import convert_sphinx_lm  # pocketsphinx only runs in the subprocess it starts

    with tempfile.TemporaryDirectory(prefix="sphinx-lm-") as tmp:
        return upper_case(convert_sphinx_lm(source, tmp))


def spellable(words, vocab: Vocab) -> list[str]:
    return [w for w in words if w not in SPECIAL and w and not vocab.unknown_chars(w)]


def general_vocabulary(lm: BackoffLM, vocab: Vocab, size: int, train_words: set[str]) -> set[str]:
    """The `size` most probable spellable words of the general LM, and every training word it has."""
    ok = set(spellable(lm.words, vocab))
    ranked = [lm.words[i] for i in np.argsort(-lm.logp[1], kind="stable") if lm.words[i] in ok]
    return set(ranked[:size]) | (train_words & ok)


def piece_lm(words_lm: BackoffLM, vocab: Vocab, sentences: int, seed: int) -> BackoffLM:
    """The PIECE_LM_ORDER-gram of `sentences` sentences drawn from the word LM, in the vocabulary's pieces."""
    drawn = sample_sentences(words_lm, sentences, np.random.default_rng(seed))
    text = piece_sentences([s for s in drawn if s and UNK not in s.split()], vocab)
    return parse_arpa(build_arpa(text, order=PIECE_LM_ORDER), f"{sentences} sampled sentences")


@dataclass
class Result:
    vocab_size: int
    max_ngrams: int
    lam: float
    counts: list[int]
    lm_mb: float
    lexicon_mb: float
    dev: dict[str, dict]
    pooled_ppl: float
    pooled_ppl_without_oovs: float
    pooled_oov_rate: float

    @property
    def total_mb(self) -> float:
        return self.lm_mb + self.lexicon_mb


def score(lm: BackoffLM, dev: dict[str, list[str]]) -> tuple[dict[str, dict], Perplexity | None]:
    scores = {name: perplexity(lm, texts) for name, texts in dev.items()}
    pooled = perplexity(lm, [t for texts in dev.values() for t in texts]) if dev else None
    return {name: asdict(p) | {"oov_rate": p.oov_rate} for name, p in scores.items()}, pooled


def table(results: list[Result], chosen: Result | None) -> str:
    names = list(results[0].dev) if results else []
    head = ["vocab", "max n-grams", "lambda", "n-grams (orders 2+)", "MB (lm+lex)",
            *[f"{n} ppl / OOV %" for n in names], "pooled ppl (OOV as <unk>)", "pooled ppl (no OOVs)", ""]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        dev = [f"{d['perplexity_with_oovs']:.1f} / {100 * d['oov_rate']:.2f}" for d in r.dev.values()]
        rows.append("| " + " | ".join([
            str(r.vocab_size), str(r.max_ngrams), f"{r.lam:g}", "/".join(map(str, r.counts[1:])),
            f"{r.total_mb:.1f}", *dev, f"{r.pooled_ppl:.1f}", f"{r.pooled_ppl_without_oovs:.1f}",
            "chosen" if r is chosen else ""]) + " |")
    return "\n".join(rows)


def values(text: str, kind):
    return [kind(v) for v in text.split(",") if v.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-text", required=True, type=Path, help="training transcripts, one sentence a line")
    parser.add_argument("--vocab", type=Path,
                        help="the model's vocab.json, characters or BPE (default: vocab.json beside --out-dir)")
    parser.add_argument("--out-dir", required=True, type=Path)
    parser.add_argument("--sphinx-lm", type=Path,
                        help="the general LM, any format pocketsphinx reads (default: its package's en-us.lm.bin)")
    parser.add_argument("--vocab-size", help=f"words kept from the general LM (default {DEFAULT_VOCAB_SIZE}, "
                        f"BPE {PIECE_DEFAULTS['vocab_size']}); a,b,c sweeps")
    parser.add_argument("--max-ngrams", help=f"n-grams above the unigrams kept from the general LM (default "
                        f"{DEFAULT_MAX_NGRAMS}, BPE {PIECE_DEFAULTS['max_ngrams']}); 0: no pruning")
    parser.add_argument("--lambda", dest="lam", help=f"weight of the training-text LM in the mixture (default "
                        f"{DEFAULT_LAMBDA}, BPE {PIECE_DEFAULTS['lam']})")
    parser.add_argument("--sentences", type=int, default=DEFAULT_SENTENCES,
                        help=f"BPE: sentences drawn from the general word LM (default {DEFAULT_SENTENCES})")
    parser.add_argument("--seed", type=int, default=1, help="BPE: seed of those draws (default 1)")
    parser.add_argument("--dev", "--dev-manifest", nargs="*", type=Path, default=[],
                        help="manifests whose transcripts score each setting (dev sets only, never test)")
    parser.add_argument("--max-mb", type=float, default=MAX_MB,
                        help=f"size budget of lm.arpa + lexicon.txt in MB of 10^6 bytes (default {MAX_MB})")
    parser.add_argument("--max-oov-rate", type=float, default=MAX_OOV_RATE,
                        help=f"a sweep's pick has at most this pooled dev OOV rate (default {MAX_OOV_RATE})")
    args = parser.parse_args()
    try:
        return build(args)
    except ASRError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def build(args: argparse.Namespace) -> int:
    started = time.time()
    args.vocab = args.vocab or args.out_dir.parent / "vocab.json"
    if not args.vocab.is_file():
        raise ASRError(f"{args.vocab}: no vocabulary there: name the model's vocab.json with --vocab")
    vocab = Vocab.load(args.vocab)
    pieces = vocab.kind == "bpe"
    defaults = PIECE_DEFAULTS if pieces else {"vocab_size": str(DEFAULT_VOCAB_SIZE),
                                               "max_ngrams": str(DEFAULT_MAX_NGRAMS), "lam": str(DEFAULT_LAMBDA)}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    units = (lambda texts: piece_sentences(texts, vocab)) if pieces else list
    order = PIECE_LM_ORDER if pieces else ORDER
    try:
        lines = args.train_text.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ASRError(f"{args.train_text}: cannot read the training text ({err})") from None
    sentences = [line.strip() for line in lines if line.strip()]
    train_words = {w for s in sentences for w in s.split()}
    bad = sorted(w for w in train_words if vocab.unknown_chars(w))
    if bad:
        raise ASRError(f"{args.train_text}: words the model cannot spell: {bad[:5]}")
    in_domain = parse_arpa(build_arpa(units(sentences), order=order), args.train_text)
    print(f"Stage 2: in-domain {order}-gram of {len(sentences)} sentences: {in_domain.counts()} n-grams",
          file=sys.stderr)

    source = args.sphinx_lm or sphinx_lm_path()
    general_words = read_general_lm(source)
    print(f"Stage 2: general LM {source}: {general_words.counts()} n-grams", file=sys.stderr)

    def general_model(vocab_size: int) -> BackoffLM:
        restricted = restrict_vocab(general_words, general_vocabulary(general_words, vocab, vocab_size, train_words))
        if not pieces:
            return restricted
        model = piece_lm(restricted, vocab, args.sentences, args.seed)
        print(f"  vocab {vocab_size}: {args.sentences} sentences drawn, their {order}-gram over pieces "
              f"{model.counts()} ({time.time() - started:.0f} s)", file=sys.stderr)
        return model

    dev = {path.stem.removeprefix("dev_"): units([u.text for u in read_manifest(path, check_audio=False)])
           for path in args.dev}
    grid = list(itertools.product(values(args.vocab_size, int), values(args.max_ngrams, int), values(args.lam, float)))
    results: list[tuple[Result, BackoffLM]] = []
    for vocab_size, group in itertools.groupby(grid, key=lambda g: g[0]):
        general = general_model(vocab_size)
        scores = [None, None] + [ngram_scores(general, n) for n in range(2, general.order + 1)]
        for max_ngrams, subgroup in itertools.groupby(group, key=lambda g: g[1]):
            pruned = prune_ngrams(general, max_ngrams=max_ngrams or None, scores=scores)
            for _, _, lam in subgroup:
                mixed = mix(in_domain, pruned, lam)
                per_set, pooled = score(mixed, dev)
                lm_bytes = len(arpa_text(mixed).encode("utf-8"))
                lex_bytes = 0 if pieces else len(lexicon_text(sorted(spellable(mixed.words, vocab))).encode("utf-8"))
                result = Result(vocab_size, max_ngrams, lam, mixed.counts(), lm_bytes / MB, lex_bytes / MB, per_set,
                                pooled.perplexity_with_oovs if pooled else float("nan"),
                                pooled.perplexity if pooled else float("nan"), pooled.oov_rate if pooled else 0.0)
                print(f"  vocab {vocab_size} max-ngrams {max_ngrams} lambda {lam:g}: {result.counts} n-grams, "
                      f"{result.total_mb:.1f} MB, pooled dev ppl {result.pooled_ppl:.1f} "
                      f"({time.time() - started:.0f} s)", file=sys.stderr)
                results.append((result, mixed if len(grid) == 1 else None))
    sweep = len(results) > 1
    fitting = [r for r, _ in results
               if r.total_mb <= args.max_mb and (not sweep or r.pooled_oov_rate <= args.max_oov_rate)]
    if not fitting:
        raise ASRError(f"no setting fits in {args.max_mb} MB with at most {args.max_oov_rate:.2%} dev OOVs: "
                       "change --vocab-size or --max-ngrams (or the budgets)")
    chosen = min(fitting, key=lambda r: (r.pooled_ppl if dev else 0.0, r.total_mb))
    if len(results) > 1:
        print(table([r for r, _ in results], chosen))
    mixed = next((m for r, m in results if r is chosen and m is not None), None)
    if mixed is None:  # a sweep keeps no models: rebuild the chosen one
        mixed = mix(in_domain, prune_ngrams(general_model(chosen.vocab_size), max_ngrams=chosen.max_ngrams or None),
                    chosen.lam)
    write(args, mixed, chosen, source, vocab, {"order": order, "sentences": args.sentences, "seed": args.seed}
          if pieces else None)
    words = "" if pieces else f" and lexicon.txt ({sum(predicted_mask(mixed)) - 2} words)"
    print(f"Stage 2: wrote {args.out_dir}/lm.arpa ({chosen.lm_mb:.1f} MB, {mixed.counts()} n-grams){words} "
          f"in {time.time() - started:.0f} s", file=sys.stderr)
    return 0


def write(args: argparse.Namespace, lm: BackoffLM, result: Result, source: Path, vocab: Vocab,
          pieces: dict | None) -> None:
    """lm.arpa, lexicon.txt (words only), NOTICE and lm_info.json in --out-dir; `pieces` (order,
    sentences, seed) for a BPE LM, None for a word LM."""
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    version = metadata.version("pocketsphinx")
    write_text_atomically(out / "lm.arpa", arpa_text(lm))
    if pieces is None:
        write_text_atomically(out / "lexicon.txt", lexicon_text(sorted(spellable(lm.words, vocab))))
    write_text_atomically(out / "NOTICE", notice(source, version, pieces))
    info = {
        "units": "words" if pieces is None else "pieces", "sampled": pieces,
        "order": lm.order, "counts": lm.counts(), "vocab_size": result.vocab_size, "max_ngrams": result.max_ngrams,
        "lambda": result.lam, "lm_mb": round(result.lm_mb, 3), "lexicon_mb": round(result.lexicon_mb, 3),
        "train_text": str(args.train_text), "general_lm": {
            "file": source.name, "package": f"pocketsphinx {version}", "licence": "BSD-2-Clause (see NOTICE)",
            "sha256": hashlib.sha256(source.read_bytes()).hexdigest()},
        "dev": result.dev,
        "dev_pooled": {"perplexity_with_oovs": result.pooled_ppl, "perplexity": result.pooled_ppl_without_oovs,
                       "oov_rate": result.pooled_oov_rate},
    }
    write_text_atomically(out / "lm_info.json", json.dumps(info, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
