"""The `asr` command: train, transcribe, decode, score, vocab, cmvn.

User-caused errors print one line (`asr: error: ...`) and exit 1; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time

from pathlib import Path

from asr.bundled import BUNDLED

EXIT_OK, EXIT_ERROR = 0, 1
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a writer whose reader closed the pipe
BUNDLED_DIR = BUNDLED["an4"].folder  # the bundled AN4 model (asr.bundled has every bundled model by name)
BUNDLED_MODEL = BUNDLED["an4"].exported  # its exported form (onnxruntime, no torch); made from model.pt
BUNDLED_CHECKPOINT = BUNDLED["an4"].checkpoint  # its PyTorch checkpoint, for training, fine-tuning and export
TRAIN_EXTRA = ("torch", "torchaudio", "librosa", "pyroomacoustics")  # pip install 'asr[train]' brings these
MAX_MISSING_WARNINGS = 5  # `asr score` names this many ids with no hypothesis, one per line, and counts the rest


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (beam and batch sizes)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (beam thresholds)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """argparse type: a finite number (weights and scores: nan or inf would silently empty every transcript)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0 (durations)."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def number_list(text: str) -> list[float]:
    """argparse type: comma-separated finite numbers, e.g. '0,0.5,1' -> [0.0, 0.5, 1.0]."""
    numbers = []
    for item in text.split(","):
        try:
            number = float(item)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            problem = f"{item.strip()!r} is not a finite number" if item.strip() else "an empty item"
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as '0,0.5,1', got {text!r} "
                                             f"({problem})")
        numbers.append(number)
    return numbers


def _add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")


def _add_decoding(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("decoding (default: what the model was tuned with)")
    group.add_argument("--decoder", choices=["greedy", "beam"], help="greedy, or beam (+ the model's LM if it has one)")
    group.add_argument("--beam-size", type=positive_int)
    group.add_argument("--beam-threshold", type=positive_float,
                       help="drop beam hypotheses scoring this much below the best (lower: faster)")
    group.add_argument("--lm-weight", type=finite_float, help="alpha: LM weight in shallow fusion")
    group.add_argument("--rnnlm-weight", type=finite_float, help="weight of the recurrent LM in shallow fusion")
    group.add_argument("--word-score", type=finite_float, help="beta: score added per word")


def build_parser() -> argparse.ArgumentParser:
    from asr.lm import PIECE_LM_ORDER, WORD_LM_ORDER

    parser = argparse.ArgumentParser(prog="asr", description="Recurrent CTC speech recognition.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("train", help="train a model from a YAML config")
    p.add_argument("--config", required=True, help="YAML config, e.g. conf/an4_blstm.yaml")
    p.add_argument("--resume", action="store_true", help="continue from <out_dir>/last.pt if it exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.epochs=5")

    p = commands.add_parser("transcribe", help="transcribe audio files and directories")
    p.add_argument("--model", help="a bundled model's name (`asr models`: english, an4), a checkpoint (.pt, run with "
                        "PyTorch) or an exported model folder (`asr export --onnx`, run with onnxruntime, no torch); "
                        "default: the bundled general-English model when installed, else an4")
    p.add_argument("paths", nargs="+", metavar="AUDIO", help="audio files or directories (searched recursively)")
    p.add_argument("--format", choices=["text", "jsonl", "srt", "vtt", "ctm"], default="text",
                   help="text: 'path<TAB>transcript' per file; jsonl: one JSON object per file with word timings "
                        "and confidences; srt/vtt: subtitles; ctm: one line per word. A word's confidence is the "
                        "mean peak posterior of its characters or pieces: how sure the model is of that spelling "
                        "among what it can write, not the chance the word was said (speech outside a model's "
                        "vocabulary, e.g. English read to the AN4 model, can score as high as clean speech)")
    p.add_argument("--output-dir", help="write one file per input here instead of stdout: <name>.txt holding the "
                   "transcript for text, <name>.<format> otherwise (files found under a directory keep their path "
                   "below it)")
    p.add_argument("--batch-size", type=positive_int, default=16,
                   help="files run through the model at once (default: 16)")
    _add_device(p)
    _add_decoding(p)

    p = commands.add_parser("decode", help="transcribe a manifest to a JSONL hypothesis file")
    p.add_argument("--model", help="as for transcribe (default: the general-English model when installed, else an4)")
    p.add_argument("--manifest", required=True)
    p.add_argument("--out", required=True, help="output JSONL: {id, text} per utterance")
    p.add_argument("--stats", metavar="PATH", help="also write timing as JSON (audio seconds, seconds, RTF)")
    p.add_argument("--batch-size", type=positive_int, default=32,
                   help="utterances run through the model at once (default: 32)")
    _add_device(p)
    _add_decoding(p)

    commands.add_parser("models", help="list the bundled models: what each recognises, its size and test WER")

    p = commands.add_parser("score", help="WER/CER of hypotheses against references")
    p.add_argument("--ref", required=True, help="JSONL with id and text, or Kaldi-style 'id words...'")
    p.add_argument("--hyp", required=True, help="same formats as --ref, or what `asr transcribe` prints (text or "
                   "jsonl: ids from the audio file names); matched by id; - reads standard input")
    p.add_argument("--json", metavar="PATH", help="also write the scores as JSON")
    p.add_argument("--report", metavar="PATH",
                   help="write an sclite-style report: per-utterance alignment, per-speaker WER, top substitutions")

    p = commands.add_parser("lm", help="build an n-gram LM (ARPA) from a manifest's transcripts: over words "
                            "(plus a lexicon) for character models, over pieces for BPE models; or train a "
                            "recurrent LM (--type lstm); `asr lm sample --model LM.pt` samples one")
    p.add_argument("action", nargs="?", choices=["build", "sample"], default="build",
                   help="build (default) or sample sentences from a recurrent LM")
    p.add_argument("--type", choices=["ngram", "lstm"], default="ngram", help="n-gram (default) or recurrent LM")
    p.add_argument("--manifest", help="training manifest (never the test set)")
    p.add_argument("--text", help="build from this text file (UTF-8, one sentence a line) instead, e.g. domain text")
    p.add_argument("--vocab", help="the model's vocabulary: a BPE one gives a piece LM (default: a word LM); "
                   "a recurrent LM's text is checked against it")
    p.add_argument("--order", type=int, help=f"n-gram order (default {WORD_LM_ORDER} for words, "
                   f"{PIECE_LM_ORDER} for pieces)")
    p.add_argument("--out-dir", help="writes lm.arpa (and lexicon.txt for a word LM), or rnnlm.pt, here")
    rnn = p.add_argument_group("recurrent LM (--type lstm)")
    rnn.add_argument("--config", help="YAML with model: and train: sections (asr.rnnlm_train.RNNLMRunConfig, e.g. "
                     "conf/rnnlm_word.yaml); the options below override it, and its defaults are the dataclasses'")
    rnn.add_argument("--units", choices=["word", "char"], help="word LSTM or Char-RNN (default word)")
    rnn.add_argument("--cell", choices=["lstm", "gru", "rnn"])
    rnn.add_argument("--layers", type=positive_int)
    rnn.add_argument("--hidden-size", type=positive_int)
    rnn.add_argument("--dropout", type=float)
    rnn.add_argument("--layer-norm", action="store_true", default=None, help="layer norm after each recurrent layer")
    rnn.add_argument("--epochs", type=positive_int, help="at most this many (early stopping on dev)")
    rnn.add_argument("--bptt", type=int, help="truncated-BPTT length (default 35 words / 100 chars)")
    rnn.add_argument("--max-vocab", type=int, help="word LM: keep the N most frequent words (default all)")
    rnn.add_argument("--dev-manifest", help="dev perplexity (early stopping) on these transcripts "
                     "(default: every 20th training sentence held out)")
    rnn.add_argument("--resume", action="store_true", help="continue an interrupted training in --out-dir")
    rnn.add_argument("--seed", type=int, help="training seed (train.seed), or the sampling seed (default 1)")
    sample = p.add_argument_group("sample")
    sample.add_argument("--model", help="recurrent LM file (rnnlm.pt) to sample from")
    sample.add_argument("--count", type=positive_int, default=5)
    sample.add_argument("--temperature", type=float, default=1.0)

    p = commands.add_parser("tune-lm", help="grid-search LM weight and word score on a dev set; save a model that uses them")
    p.add_argument("--model", required=True)
    p.add_argument("--manifest", required=True, nargs="+",
                   help="dev manifest; several are pooled, e.g. the clean dev set and degraded copies of it "
                        "(the grid point with the fewest word errors over all of them wins)")
    p.add_argument("--lm", help="ARPA file (from `asr lm`)")
    p.add_argument("--rnnlm", help="recurrent LM (from `asr lm --type lstm`), alone or with --lm")
    p.add_argument("--rnnlm-weights", type=number_list, default="0.1,0.2,0.3,0.5,0.7,1",
                   help="comma-separated recurrent LM weights")
    p.add_argument("--beam-size-token", type=positive_int, help="tokens tried per frame (default: all)")
    p.add_argument("--lexicon", help="lexicon file (from `asr lm`); character models need it, BPE models use none")
    p.add_argument("--out", required=True, help="the model with its LM, lexicon and tuned weights inside")
    p.add_argument("--lm-weights", type=number_list, default="0,0.5,1,1.5,2,2.5,3,4", help="comma-separated alphas")
    p.add_argument("--word-scores", type=number_list, default="-1,0,1,2,3,4,5", help="comma-separated betas")
    p.add_argument("--beam-size", type=positive_int, default=50)
    p.add_argument("--beam-threshold", type=positive_float,
                   help="drop hypotheses scoring this much below the best (default: asr.decode.DecodeConfig's)")
    _add_device(p)

    p = commands.add_parser("export", help="a checkpoint without training state (optionally fp16) for shipping, "
                            "or an ONNX model folder for the torch-free runtime")
    p.add_argument("--model", required=True)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", help="the checkpoint to write")
    target.add_argument("--onnx", metavar="OUT_DIR", help="write an exported model folder here: model.onnx, config.json, "
                        "LM and lexicon, manifest.json (`asr transcribe --model OUT_DIR` runs it without torch)")
    p.add_argument("--fp16", action="store_true", help="with --out: store weights in half precision (half the size)")
    p.add_argument("--int8", action="store_true", help="with --onnx: dynamic int8 quantisation of the weights")

    p = commands.add_parser("vocab", help="build the vocabulary (characters or BPE pieces) from a manifest")
    p.add_argument("--manifest", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--config", help="YAML config whose data.units and data.bpe_size to use (default: characters)")
    p.add_argument("--units", choices=["char", "bpe"], help="override data.units")
    p.add_argument("--bpe-size", type=int, help="override data.bpe_size")

    p = commands.add_parser("cmvn", help="compute global mean/variance stats of a manifest's features")
    p.add_argument("--manifest", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--config", help="YAML config whose 'features' section to use (default: FeatureConfig())")
    _add_data_commands(commands)
    _add_plot_commands(commands)
    return parser


def _add_data_commands(commands) -> None:
    data = commands.add_parser("data", help="bring your own corpus: import, validate or split a Kaldi/ESPnet data "
                               "directory or a CSV/TSV/JSONL table").add_subparsers(dest="data_command", required=True,
                                                                                    metavar="ACTION")
    for name, text in (("validate", "check a corpus the way Kaldi's validate_data_dir.sh does; every problem with "
                        "its file and line; exit 1 if any utterance is left out (warnings alone exit 0)"),
                       ("import", "check a corpus and write the usable utterances as a manifest (problems are "
                        "reported and their utterances left out)")):
        p = data.add_parser(name, help=text)
        p.add_argument("source", help="a data directory (wav.scp, text, [segments], [utt2spk]) or a .csv/.tsv/.jsonl "
                       "table with audio path and transcript columns")
        if name == "import":
            p.add_argument("--out", required=True, help="the manifest to write (JSONL)")
            p.add_argument("--wav-dir", help="where utterances cut from longer recordings (segments) are written "
                           "(default: <out without .jsonl>_wav/)")
            p.add_argument("--strict", action="store_true", help="write nothing and exit 1 if there is any problem")
        p.add_argument("--vocab", help="report characters outside this vocabulary (vocab.json), or outside the "
                       "characters of this manifest's transcripts (.jsonl, e.g. the training set)")
        p.add_argument("--text", choices=["normalise", "keep"], default="normalise",
                       help="normalise: upper-case English letters, digits, apostrophes (asr.text); keep: as written "
                       "(other languages), whitespace collapsed (default: normalise)")
        p.add_argument("--audio-root", help="a data directory's relative wav.scp paths are taken from this folder "
                       "(default: the current folder, else the data directory, else the folder above it)")
        p.add_argument("--min-duration", type=non_negative_float, default=0.1, help="seconds (default: 0.1)")
        p.add_argument("--max-duration", type=positive_float, default=60.0, help="seconds (default: 60)")
    p = data.add_parser("mix", help="one training manifest from several, each with a weight (copies per utterance)")
    p.add_argument("manifests", nargs="+", metavar="MANIFEST[:WEIGHT]",
                   help="a manifest, optionally with its weight after a colon (default 1): train_a.jsonl:2 "
                        "repeats every utterance of train_a twice, :0.5 keeps half of them")
    p.add_argument("--out", required=True, help="the mixed manifest to write")
    p.add_argument("--seed", type=int, default=0, help="draws for fractional weights (default 0)")
    p = data.add_parser("split", help="hold out whole speakers of a manifest as a dev set")
    p.add_argument("manifest")
    p.add_argument("--dev-fraction", type=float, default=0.1, help="at least this share of utterances (default 0.1)")
    p.add_argument("--train-out", required=True)
    p.add_argument("--dev-out", required=True)
    p.add_argument("--seed", type=int, default=0)


def _add_plot_commands(commands) -> None:
    plot = commands.add_parser("plot", help="pictures (needs the plot extra: pip install 'asr[plot]')"
                               ).add_subparsers(dest="plot_command", required=True, metavar="WHAT")
    p = plot.add_parser("run", help="loss, learning rate, dev WER and per-layer gradient norms of a training run")
    p.add_argument("run_dir", help="a train.out_dir (reads its metrics.csv), or a metrics.csv file (.csv or .csv.gz)")
    p.add_argument("--out", help="PNG to write (default: <run_dir>/training.png, or <file name>.png beside the file)")
    p = plot.add_parser("audio", help="what the model hears: waveform, normalised log-mel, CTC posteriorgram, words")
    p.add_argument("audio", help="an audio file")
    p.add_argument("--model", default=str(BUNDLED_CHECKPOINT),
                   help="PyTorch checkpoint (default: the bundled AN4 model.pt)")
    p.add_argument("--out", help="PNG to write (default: <audio name>.png in the current folder)")
    p.add_argument("--top", type=positive_int, default=8, help="tokens shown in the posteriorgram (default: 8)")


def cmd_data(args: argparse.Namespace) -> int:
    from asr import corpus as c

    if args.data_command == "mix":
        return _mix_manifests(args)
    if args.data_command == "split":
        from asr.manifest import read_manifest, write_manifest

        train, dev, note = c.split_by_speaker(read_manifest(args.manifest), args.dev_fraction, args.seed)
        write_manifest(args.train_out, train)
        write_manifest(args.dev_out, dev)
        print(f"{args.manifest}: {note}; {len(train)} train -> {args.train_out}, {len(dev)} dev -> {args.dev_out}",
              file=sys.stderr)
        return EXIT_OK
    alphabet = None
    if args.vocab:
        if args.vocab.endswith(".jsonl"):
            from asr.manifest import read_manifest

            alphabet = frozenset(ch for u in read_manifest(args.vocab, check_audio=False) for ch in u.text) | {" "}
        else:
            from asr.text import Vocab

            alphabet = Vocab.load(args.vocab).alphabet
    if args.min_duration > args.max_duration:
        from asr.errors import ASRError

        raise ASRError(f"--min-duration {args.min_duration:g} is above --max-duration {args.max_duration:g}: "
                       "every utterance would be left out")
    check = c.CheckConfig(text=args.text, alphabet=alphabet, min_duration=args.min_duration,
                          max_duration=args.max_duration,
                          audio_root=Path(args.audio_root) if args.audio_root else None)
    corpus = c.read_corpus(args.source, check)
    from asr.paths import printable

    for problem in corpus.problems:  # one line each, whatever the file names hold
        print(f"asr: {'error' if problem.dropped else 'warning'}: {printable(str(problem))}", file=sys.stderr)
    hours = sum(u.duration for u in corpus.utterances) / 3600
    summary = (f"{printable(args.source)}: {len(corpus.utterances)} usable utterances ({hours:.2f} h, "
               f"{len({u.speaker for u in corpus.utterances if u.speaker})} speakers), {len(corpus.problems)} problem(s), "
               f"{corpus.dropped} utterance(s) left out")
    if args.data_command == "validate":
        print(summary)
        return EXIT_ERROR if corpus.dropped or not corpus.utterances else EXIT_OK  # warnings alone: 0
    if not corpus.utterances or (args.strict and corpus.problems):
        print(f"{summary}; nothing written", file=sys.stderr)
        return EXIT_ERROR
    from tqdm import tqdm

    wav_dir = args.wav_dir or (args.out[: -len(".jsonl")] if args.out.endswith(".jsonl") else args.out) + "_wav"
    with tqdm(total=len(corpus.segments), desc="cutting segments", unit="utt", leave=False,
              disable=not (corpus.segments and sys.stderr.isatty())) as bar:
        utterances = c.cut_segments(corpus, wav_dir, bar.update)
    from asr.manifest import write_manifest

    write_manifest(args.out, utterances)
    cut = f", {len(corpus.segments)} cut from longer recordings into {wav_dir}" if corpus.segments else ""
    print(f"{summary}; wrote {args.out}{cut}", file=sys.stderr)
    return EXIT_OK


def _mix_manifests(args: argparse.Namespace) -> int:
    from asr.corpus import mix_corpora
    from asr.manifest import read_manifest, write_manifest

    parts = []
    for spec in args.manifests:
        path, weight = spec, 1.0
        head, colon, tail = spec.rpartition(":")
        if colon and head:
            try:
                path, weight = head, float(tail)
            except ValueError:
                pass  # a colon that is part of the path
        parts.append((read_manifest(path, check_audio=False), weight))
    mixed = mix_corpora(parts, args.seed)
    write_manifest(args.out, mixed)
    hours = sum(u.duration for u in mixed) / 3600
    print(f"{args.out}: {len(mixed)} utterances ({hours:.2f} h) from {len(parts)} manifest(s)", file=sys.stderr)
    return EXIT_OK


def cmd_plot(args: argparse.Namespace) -> int:
    from asr import plot

    if args.plot_command == "run":
        run = Path(args.run_dir)
        out = args.out or (run / "training.png" if run.is_dir() else run.with_name(run.name.split(".")[0] + ".png"))
        plot.plot_run(args.run_dir, out)
    else:
        out = args.out or Path(args.audio).with_suffix(".png").name
        plot.plot_audio(args.model, args.audio, out, top=args.top)
    print(f"-> {out}", file=sys.stderr)
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    from asr.config import load_config
    from asr.train import train
    from asr.runconfig import RunConfig

    config = load_config(RunConfig, args.config, args.overrides)
    train(config, resume=args.resume, progress=not args.no_progress)
    return EXIT_OK


def _transcriber(args: argparse.Namespace):
    """A Transcriber for --model (asr.load: an exported folder runs on onnxruntime without torch,
    a checkpoint with PyTorch on --device), with the decoding options given on the command line."""
    from asr.loading import load

    return load(args.model, args.device, batch_size=args.batch_size, decoder=args.decoder,
                beam_size=args.beam_size, beam_threshold=args.beam_threshold, lm_weight=args.lm_weight,
                rnnlm_weight=args.rnnlm_weight, word_score=args.word_score)


def cmd_transcribe(args: argparse.Namespace) -> int:
    from asr.errors import ASRError
    from asr.paths import expand_inputs, output_files, printable

    inputs = expand_inputs(args.paths)  # the command line is checked before torch is imported
    if args.format in ("srt", "vtt") and len(inputs) > 1 and not args.output_dir:
        raise ASRError(f"--format {args.format} with several inputs needs --output-dir (one file per input)")
    targets = output_files(inputs, args.output_dir, args.format) if args.output_dir else {}
    if args.output_dir:
        for folder in {args.output_dir, *map(os.path.dirname, targets.values())}:
            os.makedirs(folder, exist_ok=True)
    from asr.transcribe import format_output_file, format_transcript

    transcriber = _transcriber(args)
    _say_what_the_model_covers(transcriber.backend.path)
    failed = 0
    # each result as soon as it is known (not in input order: every line names its file), so
    # that one long or slow file holds back no other; names printed escaped, one line each
    for result in transcriber.transcribe(((item.path, item.error) for item in inputs), in_order=False):
        if result.error is not None:
            failed += 1
            print(f"asr: error: {printable(result.error)}", file=sys.stderr, flush=True)
            continue
        for warning in result.warnings:
            print(f"asr: warning: {printable(warning)}", file=sys.stderr, flush=True)
        if result.note is not None:
            print(f"asr: note: {printable(result.note)}", file=sys.stderr, flush=True)
        if args.output_dir:
            target = targets[result.audio]
            with open(target, "w", encoding="utf-8") as f:
                f.write(format_output_file(result, args.format))
            print(f"{printable(result.audio)} -> {printable(target)}", file=sys.stderr, flush=True)
        elif text := format_transcript(result, args.format):
            print(text, flush=True)
    if failed:
        print(f"asr: {failed} of {len(inputs)} input(s) failed", file=sys.stderr)
    return EXIT_ERROR if failed else EXIT_OK


def _say_what_the_model_covers(model: str) -> None:
    """Once per run, on stderr: a bundled limited-vocabulary model says what it can recognise."""
    from asr.bundled import BUNDLED, bundled_by_path

    bundled = bundled_by_path(model)
    if bundled is not None and bundled.limited:
        general = " (for general English: --model english)" if BUNDLED["english"].available else ""
        print(f"asr: note: {bundled.covers}{general}", file=sys.stderr, flush=True)


def cmd_models(args: argparse.Namespace) -> int:
    from asr.bundled import BUNDLED, default_model

    default = default_model().name
    for model in BUNDLED.values():
        info = model.info()
        if not model.available:
            print(f"{model.name}: not installed ({model.exported} is missing)")
            continue
        tests = "; ".join(f"{name} WER {wer:.2f} %" for name, wer in info.get("test_wer", {}).items())
        print(f"{model.name}{' (default)' if model.name == default else ''}: {model.covers}")
        print(f"    {info.get('vocabulary', '?')}; {model.size_mb():.1f} MB exported ({model.exported})"
              + (f"; test: {tests}" if tests else ""))
    return EXIT_OK


def cmd_decode(args: argparse.Namespace) -> int:
    from asr.atomic import atomic_write
    from asr.manifest import duration_mismatch, read_manifest

    utterances = read_manifest(args.manifest, check_audio=False)
    transcriber = _transcriber(args)
    started = time.monotonic()
    failed, audio_seconds = 0, 0.0
    from tqdm import tqdm

    with atomic_write(args.out) as out:
        results = transcriber.transcribe((u.audio, None) for u in utterances)
        bar = tqdm(utterances, desc=f"decoding {os.path.basename(args.manifest)}", unit="utt", leave=False,
                   disable=not sys.stderr.isatty())
        for utt, result in zip(bar, results):
            if result.error is not None:
                failed += 1
                print(f"asr: error: {utt.id}: {result.error}", file=sys.stderr)
                continue
            for warning in result.warnings:
                print(f"asr: warning: {utt.id}: {warning}", file=sys.stderr)
            audio_seconds += result.duration
            out.write(json.dumps({"id": utt.id, "text": result.text}, ensure_ascii=False) + "\n")
            mismatch = duration_mismatch(utt.duration, result.duration)
            if mismatch:
                print(f"asr: warning: {args.manifest}: {utt.id}: {mismatch}", file=sys.stderr)
    elapsed = time.monotonic() - started
    rtf = elapsed / max(audio_seconds, 1e-9)
    print(
        f"decoded {len(utterances) - failed}/{len(utterances)} utterances ({audio_seconds:.1f} s of audio) "
        f"in {elapsed:.1f} s, RTF {rtf:.4f} -> {args.out}",
        file=sys.stderr,
    )
    if args.stats:
        if "torch" in sys.modules:
            threads = sys.modules["torch"].get_num_threads()
        else:  # onnxruntime: its intra-op threads
            threads = transcriber.backend.session.get_session_options().intra_op_num_threads or os.cpu_count()
        stats = {"utterances": len(utterances), "failed": failed, "audio_seconds": audio_seconds, "seconds": elapsed,
                 "rtf": rtf, "device": transcriber.backend.device, "threads": threads}
        with open(args.stats, "w", encoding="utf-8") as f:
            json.dump(stats, f, indent=2)
    return EXIT_ERROR if failed else EXIT_OK


def _check_ids_match(ref_path: str, hyp_path: str, refs: dict[str, str], hyps: dict[str, str], matched: int) -> None:
    """Refuse to score when no id, or fewer than half of the reference ids, have a hypothesis: the
    files do not belong together (or use different ids), and a WER near 100 % would mislead."""
    from asr.errors import ASRError

    if matched > 0 and 2 * matched >= len(refs):
        return
    looks = ""
    if refs and hyps:
        looks = f" (hypothesis ids look like {next(iter(hyps))!r}, reference ids like {next(iter(refs))!r})"
    raise ASRError(f"{hyp_path}: {matched} of the {len(refs)} ids in {ref_path} have a hypothesis{looks}; "
                   "hypotheses must use the reference ids: `asr decode --manifest` writes the manifest's ids, "
                   "`asr transcribe` output is matched by audio file name (an406-fcaw-b.wav -> an406-fcaw-b)")


def _warn_missing(hyp_path: str, missing: list[str]) -> None:
    """One warning per reference id with no hypothesis, up to MAX_MISSING_WARNINGS, then a count."""
    for utt_id in missing[:MAX_MISSING_WARNINGS]:
        print(f"asr: warning: {hyp_path}: no hypothesis for {utt_id} (scored as all deletions)", file=sys.stderr)
    if len(missing) > MAX_MISSING_WARNINGS:
        print(f"asr: warning: {hyp_path}: no hypothesis for {len(missing) - MAX_MISSING_WARNINGS} more id(s) "
              "(scored as all deletions; --json lists them all)", file=sys.stderr)


def cmd_score(args: argparse.Namespace) -> int:
    from asr.errors import ASRError
    from asr.manifest import read_transcripts
    from asr.metrics import error_rates

    refs, hyps = read_transcripts(args.ref), read_transcripts(args.hyp)
    missing = [utt_id for utt_id in refs if utt_id not in hyps]
    extra = [utt_id for utt_id in hyps if utt_id not in refs]
    _check_ids_match(args.ref, args.hyp, refs, hyps, len(refs) - len(missing))
    _warn_missing(args.hyp, missing)
    if extra:
        print(f"asr: warning: {args.hyp}: {len(extra)} id(s) not in {args.ref} ignored, e.g. {extra[0]}", file=sys.stderr)
    ids = list(refs)
    ref_texts, hyp_texts = [refs[i] for i in ids], [hyps.get(i, "") for i in ids]
    report = error_rates(ref_texts, hyp_texts)
    w, c = report.words, report.chars
    if w.reference_length == 0:  # a rate over no words is not a number (it was "WER inf%", and bare Infinity in --json)
        raise ASRError(f"{args.ref}: every reference transcript ({len(ids)}) is empty: WER and CER are undefined "
                       "with no reference words (is this the right file, and its text field filled in?)")
    print(f"WER {100 * report.wer:.2f}%  ({w.errors} errors / {w.reference_length} words: "
          f"S={w.substitutions} D={w.deletions} I={w.insertions})")
    print(f"CER {100 * report.cer:.2f}%  ({c.errors} errors / {c.reference_length} chars: "
          f"S={c.substitutions} D={c.deletions} I={c.insertions})")
    print(f"utterances {report.num_utterances}  (missing from hyp: {len(missing)})")
    if args.report:
        from asr.manifest import read_speakers
        from asr.metrics import alignment_report

        text = alignment_report(ids, ref_texts, hyp_texts, read_speakers(args.ref))
        with open(args.report, "w", encoding="utf-8") as f:
            f.write(text)
    if args.json:
        scores = {
            "wer": report.wer, "cer": report.cer, "utterances": report.num_utterances, "missing": missing,
            "words": dataclasses.asdict(w), "chars": dataclasses.asdict(c),
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(scores, f, indent=2, allow_nan=False)  # strict JSON: no bare Infinity or NaN
    return EXIT_OK


def cmd_lm(args: argparse.Namespace) -> int:
    from asr.errors import ASRError

    if args.action == "sample":
        return _sample_lm(args)
    if args.type == "lstm":
        return _train_rnnlm(args)
    if bool(args.manifest) == bool(args.text) or not args.out_dir:
        raise ASRError("asr lm needs --out-dir and one of --manifest or --text")
    from asr.manifest import read_manifest
    from asr.lm import build_model_lm
    from asr.text import Vocab

    vocab = Vocab.load(args.vocab) if args.vocab else None
    if args.text:
        from asr.rnnlm_train import read_lm_text  # (imports torch: only when needed)

        texts = read_lm_text(args.text, vocab)
    else:
        texts = [u.text for u in read_manifest(args.manifest, check_audio=False)]
    print(build_model_lm(texts, vocab, args.out_dir, args.order or 0), file=sys.stderr)
    return EXIT_OK


def _sample_lm(args: argparse.Namespace) -> int:
    import torch

    from asr.errors import ASRError
    from asr.rnnlm import load_lm

    if not args.model:
        raise ASRError("asr lm sample needs --model (a recurrent LM from `asr lm --type lstm`)")
    lm = load_lm(args.model)
    for sentence in lm.sample(args.count, torch.Generator().manual_seed(1 if args.seed is None else args.seed), args.temperature):
        print(sentence)
    return EXIT_OK


def _train_rnnlm(args: argparse.Namespace) -> int:
    from asr.errors import ASRError
    from asr.manifest import read_manifest
    from asr.config import load_config
    from asr.rnnlm_train import RNNLMRunConfig, check_characters, read_lm_text, train_and_report
    from asr.text import Vocab

    if bool(args.manifest) == bool(args.text) or not args.out_dir:
        raise ASRError("asr lm --type lstm needs --out-dir and one of --manifest or --text")
    vocab = Vocab.load(args.vocab) if args.vocab else None
    dev = [u.text for u in read_manifest(args.dev_manifest, check_audio=False)] if args.dev_manifest else None
    run = load_config(RNNLMRunConfig, args.config, [
        f"{key}={value}" for key, value in (
            ("model.units", args.units), ("model.cell", args.cell), ("model.num_layers", args.layers),
            ("model.hidden_size", args.hidden_size), ("model.dropout", args.dropout),
            ("model.layer_norm", args.layer_norm), ("train.max_epochs", args.epochs), ("train.bptt", args.bptt),
            ("train.max_vocab", args.max_vocab), ("train.seed", args.seed),
        ) if value is not None])
    config, train_config = run.model, run.train
    if args.text:
        sentences = read_lm_text(args.text, vocab)
    else:
        sentences = [u.text for u in read_manifest(args.manifest, check_audio=False)]
        for utt_text in sentences if vocab is not None else ():
            check_characters(utt_text, vocab, args.manifest)
    train_and_report(config, train_config, args.out_dir, sentences, dev, resume=args.resume,
                     log=lambda line: print(line, flush=True))
    return EXIT_OK


def cmd_tune_lm(args: argparse.Namespace) -> int:
    from asr.checkpoint import decoding_section, model_from_payload, read_checkpoint, save_checkpoint
    from asr.manifest import read_manifest
    from asr.decode import DecodeConfig, make_decoder
    from asr.lm import read_arpa_text
    from asr.metrics import error_rates
    from asr.rnnlm import load_lm
    from asr.machine import pick_device
    from asr.transcribe import Transcriber
    from asr.tuning import decode_all, kept_rnnlm, tune_lm, tuning_plan

    payload = read_checkpoint(args.model)  # read once: the model to tune, then the file to extend
    transcriber = Transcriber(model_from_payload(payload, args.model).to(pick_device(args.device)), batch_size=32)
    vocab = transcriber.backend.vocab
    arpa = read_arpa_text(args.lm) if args.lm else None
    lexicon, word_scores = tuning_plan(vocab, args.model, arpa, args.lm, args.lexicon, bool(args.rnnlm),
                                       args.word_scores)
    rnnlm = load_lm(args.rnnlm) if args.rnnlm else None
    utterances = [u for path in args.manifest for u in read_manifest(path)]
    emissions = transcriber.log_probs([u.audio for u in utterances])  # once, for the whole grid
    refs = [u.text for u in utterances]
    greedy = error_rates(refs, decode_all(make_decoder(vocab, DecodeConfig()), emissions, vocab))
    print(f"greedy: {greedy.summary()}")
    points = ((len(args.lm_weights) if arpa is not None else 1) * (len(args.rnnlm_weights) if rnnlm is not None else 1)
              * len(word_scores))
    started = time.monotonic()
    done = iter(range(1, points + 1))

    def report(c, r) -> None:  # one line per grid point: how far the search is, and how long is left
        n = next(done)
        left = (time.monotonic() - started) / n * (points - n)
        print(f"[{n}/{points}, {left:.0f} s left] {_weights(c, rnnlm)} {r.summary()}", flush=True)

    results = tune_lm(
        emissions, refs, vocab, arpa, lexicon,
        lm_weights=args.lm_weights,
        word_scores=word_scores,
        base=DecodeConfig(decoder="beam", beam_size=args.beam_size, beam_size_token=args.beam_size_token,
                          **({"beam_threshold": args.beam_threshold} if args.beam_threshold is not None else {})),
        lm_source=args.lm or args.rnnlm,
        rnnlm=rnnlm, rnnlm_weights=args.rnnlm_weights,
        report=report,
    )
    config, report = results[0]
    print(f"best: {_weights(config, rnnlm)} {report.summary()}")
    kept = kept_rnnlm(config, rnnlm)
    if rnnlm is not None and kept is None:
        print("the recurrent LM did not help on dev: the model keeps the n-gram alone")
    payload["decoding"] = decoding_section(config, arpa, lexicon, kept)
    save_checkpoint(args.out, payload)
    print(f"model with LM and tuned weights -> {args.out}", file=sys.stderr)
    return EXIT_OK


def _weights(config, rnnlm) -> str:
    """The tuned weights of one grid point, as tune-lm prints them."""
    text = f"lm_weight={config.lm_weight:<5g} "
    if rnnlm is not None:
        text += f"rnnlm_weight={config.rnnlm_weight:<5g} "
    return text + f"word_score={config.word_score:<5g}"


def cmd_export(args: argparse.Namespace) -> int:
    from asr.errors import ASRError

    if args.onnx:
        if args.fp16:
            raise ASRError("--fp16 applies to --out; an ONNX export stores weights as the checkpoint holds them "
                           "(float16 when they are float16), or int8 with --int8")
        from asr.onnx_export import export_onnx

        manifest = export_onnx(args.model, args.onnx, int8=args.int8)
        size = sum(entry["bytes"] for entry in manifest["files"].values())
        print(f"{args.model} -> {args.onnx}/ ({', '.join(manifest['files'])}; {size / 1e6:.1f} MB)", file=sys.stderr)
        return EXIT_OK
    if args.int8:
        raise ASRError("--int8 applies to --onnx")
    from asr.checkpoint import export_payload, read_checkpoint, save_checkpoint

    save_checkpoint(args.out, export_payload(read_checkpoint(args.model), fp16=args.fp16))
    print(f"{args.model} -> {args.out} ({os.path.getsize(args.out) / 1e6:.1f} MB)", file=sys.stderr)
    return EXIT_OK


def cmd_vocab(args: argparse.Namespace) -> int:
    from asr.manifest import read_manifest
    from asr.config import load_config
    from asr.text import build_vocab
    from asr.runconfig import RunConfig

    data = load_config(RunConfig, args.config).data
    units = args.units or data.units
    bpe_size = args.bpe_size or data.bpe_size
    vocab = build_vocab((u.text for u in read_manifest(args.manifest, check_audio=False)), units, bpe_size)
    vocab.save(args.out)
    print(f"{len(vocab)} {units} tokens -> {args.out}", file=sys.stderr)
    return EXIT_OK


def cmd_cmvn(args: argparse.Namespace) -> int:
    from asr.config import load_config
    from asr.data import compute_features
    from asr.manifest import read_manifest
    from asr.frontend import compute_cmvn
    from asr.runconfig import RunConfig

    features = load_config(RunConfig, args.config).features
    utterances, feats, failures = compute_features(read_manifest(args.manifest), features, progress=True)
    for failure in failures:
        print(f"asr: warning: skipped {failure}", file=sys.stderr)
    compute_cmvn(feats).save(args.out)
    print(f"CMVN stats over {len(feats)} utterances -> {args.out}", file=sys.stderr)
    return EXIT_OK


COMMANDS = {
    "train": cmd_train, "transcribe": cmd_transcribe, "decode": cmd_decode,
    "score": cmd_score, "vocab": cmd_vocab, "cmvn": cmd_cmvn,
    "lm": cmd_lm, "tune-lm": cmd_tune_lm, "export": cmd_export,
    "data": cmd_data, "plot": cmd_plot, "models": cmd_models,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from asr.errors import ASRError

    try:
        return COMMANDS[args.command](args)
    except ModuleNotFoundError as err:  # the runtime-only install (pip install asr) has no training stack
        if args.debug or (err.name or "").split(".")[0] not in TRAIN_EXTRA:
            raise
        print(f"asr: error: asr {args.command} needs {err.name.split('.')[0]}, which this install lacks "
              "(it transcribes with exported models only): pip install 'asr[train]'", file=sys.stderr)
        return EXIT_ERROR
    except ASRError as err:
        if args.debug:
            raise
        from asr.paths import printable

        lines = str(err).splitlines() or [type(err).__name__]
        for line in lines:
            print(f"asr: error: {printable(line)}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # the reader left (`asr score ... | head -1`): stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not fail again
        return EXIT_BROKEN_PIPE
    except OSError as err:  # a file or folder the user named cannot be read or written
        if args.debug:
            raise
        from asr.paths import printable

        name = os.fsdecode(err.filename) if isinstance(err.filename, bytes) else str(err.filename)
        where = f"{printable(name)}: " if err.filename else ""
        print(f"asr: error: {where}{err.strerror or err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("asr: interrupted", file=sys.stderr)
        return 130
