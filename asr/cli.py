"""The `asr` command: train, transcribe, decode, score, vocab, cmvn.

User-caused errors print one line (`asr: error: ...`) and exit 1; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

EXIT_OK, EXIT_ERROR = 0, 1


def _add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asr", description="Recurrent CTC speech recognition.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("train", help="train a model from a YAML config")
    p.add_argument("--config", required=True, help="YAML config, e.g. conf/an4_blstm.yaml")
    p.add_argument("--resume", action="store_true", help="continue from <out_dir>/last.pt if it exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.epochs=5")

    p = commands.add_parser("transcribe", help="transcribe audio files and directories")
    p.add_argument("--model", required=True, help="checkpoint (.pt)")
    p.add_argument("paths", nargs="+", metavar="AUDIO", help="audio files or directories (searched recursively)")
    p.add_argument("--format", choices=["text", "jsonl"], default="text",
                   help="text: 'path<TAB>transcript' per file; jsonl: one JSON object per file")
    p.add_argument("--batch-size", type=int, default=16)
    _add_device(p)

    p = commands.add_parser("decode", help="transcribe a manifest to a JSONL hypothesis file")
    p.add_argument("--model", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--out", required=True, help="output JSONL: {id, text} per utterance")
    p.add_argument("--stats", metavar="PATH", help="also write timing as JSON (audio seconds, seconds, RTF)")
    p.add_argument("--batch-size", type=int, default=32)
    _add_device(p)

    p = commands.add_parser("score", help="WER/CER of hypotheses against references")
    p.add_argument("--ref", required=True, help="JSONL with id and text, or Kaldi-style 'id words...'")
    p.add_argument("--hyp", required=True, help="same formats as --ref; matched by id")
    p.add_argument("--json", metavar="PATH", help="also write the scores as JSON")

    p = commands.add_parser("vocab", help="build the character vocabulary from a manifest")
    p.add_argument("--manifest", required=True)
    p.add_argument("--out", required=True)

    p = commands.add_parser("cmvn", help="compute global mean/variance stats of a manifest's features")
    p.add_argument("--manifest", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--config", help="YAML config whose 'features' section to use (default: FeatureConfig())")
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    from asr.config import load_config
    from asr.train import RunConfig, train

    config = load_config(RunConfig, args.config, args.overrides)
    train(config, resume=args.resume, progress=not args.no_progress)
    return EXIT_OK


def _transcriber(args: argparse.Namespace):
    from asr.checkpoint import load_model
    from asr.transcribe import Transcriber
    from asr.train import pick_device

    return Transcriber(load_model(args.model), pick_device(args.device), batch_size=args.batch_size)


def cmd_transcribe(args: argparse.Namespace) -> int:
    from asr.transcribe import expand_inputs

    transcriber = _transcriber(args)
    failed = 0
    for result in transcriber.transcribe(expand_inputs(args.paths)):
        if result.error is not None:
            failed += 1
            print(f"asr: error: {result.error}", file=sys.stderr, flush=True)
            continue
        if args.format == "jsonl":
            record = {"audio": result.audio, "text": result.text, "duration": round(result.duration, 3)}
            print(json.dumps(record, ensure_ascii=False), flush=True)
        else:
            print(f"{result.audio}\t{result.text}", flush=True)
    if failed:
        print(f"asr: {failed} file(s) failed", file=sys.stderr)
    return EXIT_ERROR if failed else EXIT_OK


def cmd_decode(args: argparse.Namespace) -> int:
    from asr.data import read_manifest

    utterances = read_manifest(args.manifest, check_audio=False)
    transcriber = _transcriber(args)
    started = time.monotonic()
    failed, audio_seconds = 0, 0.0
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        results = transcriber.transcribe((u.audio, None) for u in utterances)
        for utt, result in zip(utterances, results):
            if result.error is not None:
                failed += 1
                print(f"asr: error: {utt.id}: {result.error}", file=sys.stderr)
                continue
            audio_seconds += result.duration
            out.write(json.dumps({"id": utt.id, "text": result.text}, ensure_ascii=False) + "\n")
    os.replace(tmp, args.out)
    elapsed = time.monotonic() - started
    rtf = elapsed / max(audio_seconds, 1e-9)
    print(
        f"decoded {len(utterances) - failed}/{len(utterances)} utterances ({audio_seconds:.1f} s of audio) "
        f"in {elapsed:.1f} s, RTF {rtf:.4f} -> {args.out}",
        file=sys.stderr,
    )
    if args.stats:
        stats = {"utterances": len(utterances), "failed": failed, "audio_seconds": audio_seconds,
                 "seconds": elapsed, "rtf": rtf, "device": str(transcriber.device), "threads": torch_threads()}
        with open(args.stats, "w", encoding="utf-8") as f:
            json.dump(stats, f, indent=2)
    return EXIT_ERROR if failed else EXIT_OK


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def cmd_score(args: argparse.Namespace) -> int:
    from asr.data import read_transcripts
    from asr.metrics import error_rates

    refs, hyps = read_transcripts(args.ref), read_transcripts(args.hyp)
    missing = [utt_id for utt_id in refs if utt_id not in hyps]
    extra = [utt_id for utt_id in hyps if utt_id not in refs]
    for utt_id in missing:
        print(f"asr: warning: {args.hyp}: no hypothesis for {utt_id} (scored as all deletions)", file=sys.stderr)
    if extra:
        print(f"asr: warning: {args.hyp}: {len(extra)} id(s) not in {args.ref} ignored, e.g. {extra[0]}", file=sys.stderr)
    ids = list(refs)
    report = error_rates([refs[i] for i in ids], [hyps.get(i, "") for i in ids])
    w, c = report.words, report.chars
    print(f"WER {100 * report.wer:.2f}%  ({w.errors} errors / {w.reference_length} words: "
          f"S={w.substitutions} D={w.deletions} I={w.insertions})")
    print(f"CER {100 * report.cer:.2f}%  ({c.errors} errors / {c.reference_length} chars: "
          f"S={c.substitutions} D={c.deletions} I={c.insertions})")
    print(f"utterances {report.num_utterances}  (missing from hyp: {len(missing)})")
    if args.json:
        scores = {
            "wer": report.wer, "cer": report.cer, "utterances": report.num_utterances, "missing": missing,
            "words": dataclasses.asdict(w), "chars": dataclasses.asdict(c),
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(scores, f, indent=2)
    return EXIT_OK


def cmd_vocab(args: argparse.Namespace) -> int:
    from asr.data import read_manifest
    from asr.text import Vocab

    vocab = Vocab.from_texts(u.text for u in read_manifest(args.manifest, check_audio=False))
    vocab.save(args.out)
    print(f"{len(vocab)} tokens -> {args.out}", file=sys.stderr)
    return EXIT_OK


def cmd_cmvn(args: argparse.Namespace) -> int:
    from asr.config import load_config
    from asr.data import compute_features, read_manifest
    from asr.features import compute_cmvn
    from asr.train import RunConfig

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
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from asr.errors import ASRError

    try:
        return COMMANDS[args.command](args)
    except ASRError as err:
        if args.debug:
            raise
        lines = str(err).splitlines() or [type(err).__name__]
        for line in lines:
            print(f"asr: error: {line}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("asr: interrupted", file=sys.stderr)
        return 130
