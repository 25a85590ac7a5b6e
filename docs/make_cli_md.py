"""Write docs/cli.md, the command-line reference, from the argument parser (asr.cli.build_parser).

    python docs/make_cli_md.py            # rewrite docs/cli.md
    python docs/make_cli_md.py --check    # exit 1 if docs/cli.md is not what the parser gives

tests/test_docs.py regenerates the text in memory and compares it with the committed file, so a
changed option fails the tests until this script is run again. The options tables come from the
parser's actions (option strings, metavar or choices, default, help), not from argparse's own
help formatting, so the file does not depend on the terminal width or the Python version. The
prose under some commands is NOTES below: edit it here, then run the script.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "cli.md"

HEADER = """\
# Command-line reference

Generated from the argument parser (`asr.cli.build_parser`) by `python docs/make_cli_md.py`: do
not edit by hand (`tests/test_docs.py` fails when this file is not what the parser gives). Every
command also prints its options with `asr COMMAND --help`.

`asr [--debug] COMMAND ...`: `--debug` shows a Python traceback for an error; without it, every
error a user can cause is one line, `asr: error: ...`, naming the file and the fix, and the exit
status is 1. `asr --help` imports nothing heavy (no torch), and neither does transcription with
an exported model.
"""

NOTES = {
    "transcribe": """\
- `--model` takes a bundled model's name (`asr models`: `english`, the default, or `an4`), an
  exported folder (`asr export --onnx`; run with onnxruntime and numpy, torch is never imported;
  a path to its `model.onnx` runs the folder too) or a PyTorch checkpoint (`.pt`, run with torch
  on `--device`). The `an4` model says once on stderr what it can recognise.
- Inputs: files and directories (searched recursively). Audio of any rate and channel count is
  downmixed and resampled to 16 kHz (soxr); WAV (8/16/24-bit and float PCM), FLAC, OGG/Vorbis,
  NIST SPHERE and, with the installed libsndfile, MP3 are read. Files longer than 60 s are
  streamed: features block by block, the model in 20 s windows with 2 s of context either side,
  decoding pause by pause, so memory stays bounded for hours of audio.
- Output: `text` is `path<TAB>transcript`; `jsonl` is
  `{"audio", "text", "words": [{"word", "start", "end", "confidence"}], "duration"}`; `srt`/`vtt`
  are subtitles (cues split at pauses); `ctm` is NIST CTM, one line per word. `--output-dir`
  writes one file per input instead: `<name>.txt` holding the transcript alone for `text`,
  `<name>.<format>` for the others; a file found under a directory argument keeps its path below
  that directory (`dir/sub/x.wav` -> `OUT/sub/x.txt`), and two inputs that would still share an
  output file are refused, naming both, before any work. `srt`/`vtt` with several inputs need
  `--output-dir`. Results are printed as soon as each is known (every line names its file).
- A file that cannot be used (missing, empty, truncated, not audio, shorter than 25 ms, NaN
  samples, ...) is reported on stderr as `asr: error: PATH: cause`; the others are still
  transcribed and the exit status is 1. Silence gives an empty transcript.
- Decoding: a model carries the decoding it was tuned with (`asr tune-lm` stores the LM, the
  lexicon, the LM weight and the word score inside it), so such a model decodes with beam search
  + LM by default and a plain one greedily. `--decoder greedy` (or `--decoder beam --lm-weight 0`)
  overrides it, as `--beam-size`, `--beam-threshold` (hypotheses scoring this much below the best
  are dropped), `--lm-weight`, `--rnnlm-weight` and `--word-score` override one setting each.
""",
    "decode": """\
`asr decode` writes the manifest's ids, which is what `asr score` matches on (`asr transcribe`
output is keyed by audio path, so it does not match a manifest). To score a model on a test set:
`asr decode --model M.pt --manifest test.jsonl --out hyp.jsonl`, then
`asr score --ref test.jsonl --hyp hyp.jsonl`. The manifest is checked whole before any work
(every malformed line, missing field, duplicate id, missing audio file is listed as
`file:line: problem`); a duration that disagrees with the audio is a warning. Decoding options
as for `transcribe`.
""",
    "score": """\
Takes JSONL (`id`, `text`) or Kaldi-style text (`id word word ...`), matches by id, and prints
WER and CER with substitution/deletion/insertion counts. An id missing from the hypotheses counts
as all deletions and is named on stderr (the first 5, then a count). If no reference id, or
fewer than half of them, has a hypothesis, the files do not match and `score` stops with an error
instead of a WER. `--report` writes an sclite-style report: per-utterance REF/HYP alignment with
S/D/I marked, per-speaker WER, the most frequent substitutions.
""",
    "train": """\
Reads a complete YAML config (`conf/`); any key can be overridden as `section.key=value`. Writes
`last.pt` every `train.checkpoint_every` steps and each epoch (atomically: temp file + fsync +
rename), `best.pt` (lowest dev WER), `metrics.csv` (loss, lr, gradient norm overall and per
layer, dev WER/CER, speed), `config.yaml` and, with the tensorboard extra, event files to
`train.out_dir`. `--resume` continues from `last.pt`, mid-epoch included, and ends with the same
weights as an uninterrupted run. Several GPUs or nodes: run it under `torchrun`
([recipes.md](recipes.md#librispeech-recipeslibrispeechrunsh)).
""",
    "tune-lm": """\
`--manifest` takes several dev manifests and scores them as one set: give it degraded copies of
dev as well (noise, rooms, telephone, like the audio the model will meet; `bench/robustness.py`
writes 14 kinds to `exp/robustness/audio/dev/*.jsonl`) and the weights are chosen for that mix,
not for clean dev alone. `--rnnlm` with `--lm` and `--lexicon` fuses both LMs, log-linearly; a
recurrent LM whose best weight on dev is 0 is not stored.
""",
    "lm": """\
`asr lm --manifest train.jsonl --vocab vocab.json --out-dir lm/` writes a word 3-gram and its
lexicon (a character model) or a piece 6-gram (a BPE model). `asr lm --type lstm --units word|char
(--manifest train.jsonl | --text corpus.txt) --out-dir rnnlm/` trains a recurrent LM;
`asr lm sample --model rnnlm/rnnlm.pt` prints sentences drawn from one. See
[design.md](design.md#decoding-and-language-models).
""",
    "export": """\
`--out M.pt [--fp16]` drops the training state (optimiser, scheduler) for shipping.
`--onnx DIR [--int8]` writes the exported folder `asr transcribe --model DIR` runs without torch
(needs the `onnx` extra: `pip install -e '.[onnx]'`); see
[design.md](design.md#the-exported-model-and-its-runtime).
""",
    "data import": """\
A Kaldi/ESPnet data directory (`wav.scp`, `text`, optional `segments` and `utt2spk`) or a table
(`.csv`/`.tsv` with a header, or `.jsonl`; NeMo-style `audio_filepath`/`text`/`offset`/`duration`
works) with an audio path column and a transcript column. Every problem is reported at once with
its file and line; see [recipes.md](recipes.md#your-own-corpus-recipescustomrunsh).
""",
}


def repo_relative(value):
    """A default that is a path inside this repository, written relative to it (the file must not
    depend on where the repository is)."""
    if isinstance(value, (str, Path)):
        try:
            return str(Path(value).resolve().relative_to(REPO))
        except (ValueError, OSError):
            return str(value)
    return value


def cell(text: str) -> str:
    """One table cell: one line, `|` escaped, and `<name>` outside code spans kept visible."""
    parts = " ".join(str(text).split()).replace("|", "\\|").split("`")
    for i in range(0, len(parts), 2):  # the even parts are outside `code`
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts)


def metavar(action: argparse.Action) -> str:
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        name = "{" + ",".join(map(str, action.choices)) + "}"
    elif action.metavar is not None:
        name = action.metavar if isinstance(action.metavar, str) else " ".join(action.metavar)
    elif action.option_strings:
        name = action.dest.upper()
    else:
        name = action.dest
    if action.nargs == "+":
        return f"{name} [{name} ...]"
    if action.nargs == "*":
        return f"[{name} ...]"
    if action.nargs == "?":
        return f"[{name}]"
    return name


def help_text(action: argparse.Action, parser: argparse.ArgumentParser) -> str:
    text = action.help or ""
    if "%" in text:
        params = {**vars(action), "prog": parser.prog}
        params = {k: (getattr(v, "__name__", v) if k == "type" else v) for k, v in params.items()}
        text = text % params
    return cell(text)


def takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0


def default_text(action: argparse.Action) -> str:
    if action.required and (action.option_strings or action.nargs not in ("?", "*")):
        return "required"
    value = action.default
    if value is None or value is argparse.SUPPRESS or value is False or not takes_value(action):
        return ""
    if isinstance(value, list):
        value = ",".join(map(str, value))
    return f"`{cell(repo_relative(value))}`"


def synopsis(name: str, parser: argparse.ArgumentParser) -> str:
    words = [f"asr {name}"]
    optional = False
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            if action.required:
                words.append(f"{action.option_strings[-1]} {metavar(action)}")
            else:
                optional = True
    if optional:
        words.append("[options]")
    words += [metavar(a) for a in parser._actions if not a.option_strings]
    return " ".join(words)


def subcommands(parser: argparse.ArgumentParser):
    """(help, parser) by name for a parser's subcommands, in the order they were added."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            return {name: (helps.get(name, ""), sub) for name, sub in action.choices.items()}
    return {}


def command_section(name: str, summary: str, parser: argparse.ArgumentParser) -> list[str]:
    summary = cell(summary)
    lines = [f"## asr {name}", "", summary[:1].upper() + summary[1:] + ".", "", "```text", synopsis(name, parser),
             "```", ""]
    tables: dict[str, list[str]] = {}  # the parser's own groups first, in one table; then each titled group
    for group in parser._action_groups:
        title = "" if group.title in ("positional arguments", "options", "optional arguments") else group.title
        for action in group._group_actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) or action.help == argparse.SUPPRESS:
                continue
            option = ", ".join(f"`{s}`" for s in action.option_strings) or f"`{metavar(action)}`"
            value = f"`{metavar(action)}`" if action.option_strings and takes_value(action) else ""
            row = f"| {option} | {value} | {default_text(action)} | {help_text(action, parser)} |"
            tables.setdefault(title, []).append(row)
    for title, rows in sorted(tables.items(), key=lambda item: item[0] != ""):
        if title:
            lines += [f"{cell(title)[:1].upper()}{cell(title)[1:]}:", ""]
        lines += ["| argument | value | default | what it does |", "|---|---|---|---|", *rows, ""]
    if name in NOTES:
        lines += [NOTES[name].rstrip(), ""]
    return lines


def render() -> str:
    sys.path.insert(0, str(REPO))
    from asr.cli import build_parser

    parser = build_parser()
    sections, index = [], []
    for name, (summary, sub) in subcommands(parser).items():
        nested = subcommands(sub)
        if nested:
            index.append(f"- `asr {name}`: {cell(summary)}")
            for child, (child_summary, child_parser) in nested.items():
                full = f"{name} {child}"
                index.append(f"  - [`asr {full}`](#asr-{name}-{child}): {cell(child_summary)}")
                sections += command_section(full, child_summary, child_parser)
        else:
            index.append(f"- [`asr {name}`](#asr-{name}): {cell(summary)}")
            sections += command_section(name, summary, sub)
    return "\n".join([HEADER, *index, "", *sections]).rstrip() + "\n"


def main() -> int:
    check = "--check" in sys.argv[1:]
    text = render()
    if check:
        current = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
        if current != text:
            print(f"{OUT.relative_to(REPO)} is out of date: run python docs/make_cli_md.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
