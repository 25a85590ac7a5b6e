"""The `asr` console script, run as a user would run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from asr.cli import build_parser, main

from .conftest import OVERFIT_SET, run_asr, write_tone


def test_console_script_is_installed_and_shows_help():
    result = run_asr("--help")
    assert result.returncode == 0
    for command in ("train", "transcribe", "decode", "score"):
        assert command in result.stdout


def test_transcribe_prints_one_line_per_file_of_a_directory(untrained_model, tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.wav", "sub/b.flac"):
        write_tone(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not audio")
    result = run_asr("transcribe", "--model", str(untrained_model), str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(tmp_path / "a.wav"), str(tmp_path / "sub" / "b.flac")]


def test_transcribe_missing_file_is_reported_and_the_others_still_print(untrained_model, tmp_path):
    good, broken = tmp_path / "good.wav", tmp_path / "broken.wav"
    write_tone(good)
    broken.write_text("this is text, not a RIFF file")
    missing = tmp_path / "missing.wav"
    result = run_asr("transcribe", "--model", str(untrained_model), "--format", "jsonl",
                     str(missing), str(good), str(broken))
    assert result.returncode != 0
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["audio"] for r in records] == [str(good)]
    assert set(records[0]) >= {"audio", "text", "duration"} and records[0]["duration"] == pytest.approx(1.0)
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert any(str(missing) in line and "no such file" in line for line in errors)
    assert any(str(broken) in line and "not readable as audio" in line for line in errors)
    assert "Traceback" not in result.stderr


def test_a_missing_directory_is_counted_as_a_failed_input_not_a_file(untrained_model, tmp_path, capsys):
    write_tone(tmp_path / "good.wav")
    missing = tmp_path / "no_such_dir"
    assert main(["transcribe", "--model", str(untrained_model), str(missing), str(tmp_path / "good.wav")]) == 1
    assert capsys.readouterr().err.splitlines() == [f"asr: error: {missing}: no such file or directory",
                                                    "asr: 1 of 2 input(s) failed"]


def test_transcribe_with_a_missing_model_is_one_line_error(tmp_path):
    write_tone(tmp_path / "a.wav")
    result = run_asr("transcribe", "--model", str(tmp_path / "nope.pt"), str(tmp_path / "a.wav"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"asr: error: {tmp_path / 'nope.pt'}: no such checkpoint file"]


def test_score_matches_ids_across_jsonl_and_kaldi_formats(tmp_path):
    ref = tmp_path / "ref.jsonl"
    ref.write_text("\n".join(json.dumps(r) for r in [
        {"id": "u1", "text": "A B C D"},
        {"id": "u2", "text": "YES"},
        {"id": "u3", "text": "GO HOME"},
    ]) + "\n")
    hyp = tmp_path / "hyp.txt"  # Kaldi style, different order, u3 missing
    hyp.write_text("u2 YES\nu1 A X C D E\n")
    result = run_asr("score", "--ref", str(ref), "--hyp", str(hyp), "--json", str(tmp_path / "s.json"))
    assert result.returncode == 0, result.stderr
    # words: u1 1 sub + 1 ins, u2 ok, u3 2 deletions -> 4 errors / 7 words
    assert "WER 57.14%" in result.stdout and "S=1 D=2 I=1" in result.stdout
    assert "u3" in result.stderr
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["missing"] == ["u3"] and scores["utterances"] == 3
    assert scores["words"] == {"substitutions": 1, "deletions": 2, "insertions": 1, "reference_length": 7}


def write_references(path: Path, count: int) -> list[str]:
    ids = [f"u{n}" for n in range(1, count + 1)]
    path.write_text("".join(json.dumps({"id": i, "text": "YES NO"}) + "\n" for i in ids))
    return ids


def test_score_refuses_hypotheses_whose_ids_match_no_reference(tmp_path, capsys):
    ref, hyp = tmp_path / "test.jsonl", tmp_path / "hyp.txt"
    write_references(ref, 3)
    hyp.write_text("".join(f"/audio/take{n}.wav\tYES NO\n" for n in range(1, 4)))  # other files' transcripts
    assert main(["score", "--ref", str(ref), "--hyp", str(hyp)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"asr: error: {hyp}: 0 of the 3 ids in {ref} have a hypothesis (hypothesis ids look like 'take1', "
        "reference ids like 'u1'); hypotheses must use the reference ids: `asr decode --manifest` writes the "
        "manifest's ids, `asr transcribe` output is matched by audio file name (an406-fcaw-b.wav -> an406-fcaw-b)"
    ]


def test_score_refuses_hypotheses_for_fewer_than_half_of_the_references(tmp_path, capsys):
    ref, hyp = tmp_path / "test.jsonl", tmp_path / "hyp.txt"
    write_references(ref, 5)
    hyp.write_text("u1 YES NO\nu2 YES\n")
    assert main(["score", "--ref", str(ref), "--hyp", str(hyp)]) == 1
    (error,) = capsys.readouterr().err.splitlines()
    assert error.startswith(f"asr: error: {hyp}: 2 of the 5 ids in {ref} have a hypothesis")


def test_score_names_the_first_missing_ids_and_counts_the_rest(tmp_path, capsys):
    ref, hyp = tmp_path / "test.jsonl", tmp_path / "hyp.txt"
    ids = write_references(ref, 14)
    hyp.write_text("".join(f"{i} YES NO\n" for i in ids[:7]))  # exactly half: scored
    assert main(["score", "--ref", str(ref), "--hyp", str(hyp), "--json", str(tmp_path / "s.json")]) == 0
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        *(f"asr: warning: {hyp}: no hypothesis for {i} (scored as all deletions)" for i in ids[7:12]),
        f"asr: warning: {hyp}: no hypothesis for 2 more id(s) (scored as all deletions; --json lists them all)",
    ]
    assert "WER 50.00%" in out
    assert json.loads((tmp_path / "s.json").read_text())["missing"] == ids[7:]


def test_train_with_unknown_config_key_is_one_line_error(tmp_path):
    result = run_asr("train", "--config", "conf/an4_blstm.yaml", "model.hiden_size=3",
                     cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 1
    assert result.stderr.strip() == "asr: error: conf/an4_blstm.yaml: unknown key(s) model.hiden_size"


@pytest.mark.an4
def test_transcribe_and_decode_with_a_trained_model(overfit_model, an4_dir, tmp_path):
    wav = lambda utt_id: str(an4_dir / "wav" / "an4_clstk" / OVERFIT_SET[utt_id][0] / f"{utt_id}.wav")  # noqa: E731
    result = run_asr("transcribe", "--model", str(overfit_model), wav("cen2-fash-b"), wav("an87-fbbh-b"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{wav('cen2-fash-b')}\tA M Y", f"{wav('an87-fbbh-b')}\tENTER SIX TWO FOUR"]

    manifest = overfit_model.parents[1] / "train.jsonl"
    hyp, stats = tmp_path / "hyp.jsonl", tmp_path / "stats.json"
    result = run_asr("decode", "--model", str(overfit_model), "--manifest", str(manifest),
                     "--out", str(hyp), "--stats", str(stats))
    assert result.returncode == 0, result.stderr
    result = run_asr("score", "--ref", str(manifest), "--hyp", str(hyp))
    assert "WER 0.00%" in result.stdout
    assert json.loads(stats.read_text())["utterances"] == len(OVERFIT_SET)


# --- option values are checked when the command line is parsed ----------------------------------

TUNE_LM = ["tune-lm", "--model", "m.pt", "--manifest", "dev.jsonl", "--lm", "lm.arpa", "--out", "out.pt"]
BAD_OPTION_VALUES = {  # name: (command line, the error line argparse must print)
    "beam_size_zero": (["transcribe", "--beam-size", "0", "a.wav"],
                       "asr transcribe: error: argument --beam-size: expected a positive whole number, got '0'"),
    "beam_size_negative": (["decode", "--model", "m.pt", "--manifest", "t.jsonl", "--out", "h.jsonl",
                            "--beam-size", "-3"],
                           "asr decode: error: argument --beam-size: expected a positive whole number, got '-3'"),
    "beam_size_not_a_number": ([*TUNE_LM, "--beam-size", "big"],
                               "asr tune-lm: error: argument --beam-size: expected a positive whole number, "
                               "got 'big'"),
    "beam_threshold_zero": (["transcribe", "--beam-threshold", "0", "a.wav"],
                            "asr transcribe: error: argument --beam-threshold: expected a positive number, got '0'"),
    "beam_threshold_not_a_number": ([*TUNE_LM, "--beam-threshold", "wide"],
                                    "asr tune-lm: error: argument --beam-threshold: expected a positive number, "
                                    "got 'wide'"),
    "transcribe_batch_size_zero": (["transcribe", "--batch-size", "0", "a.wav"],
                                   "asr transcribe: error: argument --batch-size: expected a positive whole number, "
                                   "got '0'"),
    "decode_batch_size_zero": (["decode", "--model", "m.pt", "--manifest", "t.jsonl", "--out", "h.jsonl",
                                "--batch-size", "0"],
                               "asr decode: error: argument --batch-size: expected a positive whole number, got '0'"),
    "lm_weights_not_a_number": ([*TUNE_LM, "--lm-weights", "0,abc,1"],
                                "asr tune-lm: error: argument --lm-weights: expected comma-separated numbers such as "
                                "'0,0.5,1', got '0,abc,1' ('abc' is not a finite number)"),
    "lm_weights_empty_item": ([*TUNE_LM, "--lm-weights", "0,,1"],
                              "asr tune-lm: error: argument --lm-weights: expected comma-separated numbers such as "
                              "'0,0.5,1', got '0,,1' (an empty item)"),
    "word_scores_trailing_comma": ([*TUNE_LM, "--word-scores", "1,2,"],
                                   "asr tune-lm: error: argument --word-scores: expected comma-separated numbers "
                                   "such as '0,0.5,1', got '1,2,' (an empty item)"),
    "word_scores_nan": ([*TUNE_LM, "--word-scores", "nan"],
                        "asr tune-lm: error: argument --word-scores: expected comma-separated numbers such as "
                        "'0,0.5,1', got 'nan' ('nan' is not a finite number)"),
}


@pytest.mark.parametrize("name", BAD_OPTION_VALUES)
def test_a_bad_option_value_is_a_usage_error_not_a_traceback(name, capsys):
    argv, error = BAD_OPTION_VALUES[name]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: asr ") and err.splitlines()[-1] == error


def test_comma_lists_are_parsed_into_numbers():
    args = build_parser().parse_args([*TUNE_LM, "--lm-weights", "0, 0.5,2", "--word-scores", "-1"])
    assert args.lm_weights == [0.0, 0.5, 2.0] and args.word_scores == [-1.0]
    defaults = build_parser().parse_args(TUNE_LM)
    assert defaults.lm_weights == [0, 0.5, 1, 1.5, 2, 2.5, 3, 4] and defaults.word_scores == [-1, 0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("command", ["transcribe", "decode"])
def test_batch_size_has_help(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "run through the model at once" in capsys.readouterr().out


# --- usage errors are found before torch is imported ----------------------------------------------


def run_main_reporting_torch(*argv: str) -> subprocess.CompletedProcess:
    """asr.cli.main(argv) in a fresh interpreter; stdout ends with whether torch got imported."""
    code = ("import sys; from asr.cli import main; code = main(sys.argv[1:]); "
            "print('torch imported:', 'torch' in sys.modules); sys.exit(code)")
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, encoding="utf-8", timeout=300)


def test_subtitles_for_several_inputs_without_output_dir_is_refused_before_importing_torch(tmp_path):
    for name in ("a.wav", "b.wav"):
        write_tone(tmp_path / name)
    result = run_main_reporting_torch("transcribe", "--format", "srt", str(tmp_path / "a.wav"), str(tmp_path / "b.wav"))
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["asr: error: --format srt with several inputs needs --output-dir "
                                          "(one file per input)"]
    assert result.stdout.splitlines() == ["torch imported: False"]


# --- --output-dir: one file per input, never two inputs to one file -----------------------------


def test_output_dir_mirrors_the_folders_under_a_directory_argument(untrained_model, tmp_path, capsys):
    audio, out = tmp_path / "audio", tmp_path / "out"
    for name in ("a/x.wav", "b/x.wav", "top.flac"):
        (audio / name).parent.mkdir(parents=True, exist_ok=True)
        write_tone(audio / name)
    write_tone(tmp_path / "single.wav")
    argv = ["transcribe", "--model", str(untrained_model), "--format", "jsonl", "--output-dir", str(out)]
    assert main([*argv, str(audio), str(tmp_path / "single.wav")]) == 0
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["a/x.jsonl", "b/x.jsonl", "single.jsonl", "top.jsonl"]
    assert json.loads((out / "b" / "x.jsonl").read_text())["audio"] == str(audio / "b" / "x.wav")
    assert f"{audio / 'a' / 'x.wav'} -> {out / 'a' / 'x.jsonl'}" in capsys.readouterr().err


def test_text_output_files_are_named_txt_and_hold_the_transcript_alone(untrained_model, tmp_path, capsys):
    write_tone(tmp_path / "x.wav")
    model = ["transcribe", "--model", str(untrained_model)]
    assert main([*model, str(tmp_path / "x.wav")]) == 0
    path, transcript = capsys.readouterr().out.rstrip("\n").split("\t")  # stdout keeps path<TAB>text
    assert path == str(tmp_path / "x.wav")
    assert main([*model, "--output-dir", str(tmp_path / "out"), str(tmp_path / "x.wav")]) == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["x.txt"]
    assert (tmp_path / "out" / "x.txt").read_text(encoding="utf-8") == transcript + "\n"


def same_name_in_two_folders(tmp_path: Path) -> tuple[list[str], tuple[str, str]]:
    """(command-line paths, the two inputs that collide)"""
    for name in ("a/x.wav", "b/x.wav"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        write_tone(tmp_path / name)
    paths = [str(tmp_path / "a" / "x.wav"), str(tmp_path / "b" / "x.wav")]
    return paths, (paths[0], paths[1])


def same_stem_in_one_folder(tmp_path: Path) -> tuple[list[str], tuple[str, str]]:
    (tmp_path / "dir").mkdir()
    write_tone(tmp_path / "dir" / "x.wav")
    write_tone(tmp_path / "dir" / "x.flac", format="FLAC")
    return [str(tmp_path / "dir")], (str(tmp_path / "dir" / "x.flac"), str(tmp_path / "dir" / "x.wav"))


def same_file_twice(tmp_path: Path) -> tuple[list[str], tuple[str, str]]:
    write_tone(tmp_path / "x.wav")
    return [str(tmp_path / "x.wav")] * 2, (str(tmp_path / "x.wav"), str(tmp_path / "x.wav"))


@pytest.mark.parametrize("make_inputs", [same_name_in_two_folders, same_stem_in_one_folder, same_file_twice])
def test_two_inputs_for_one_output_file_are_refused_before_any_work(make_inputs, tmp_path, capsys):
    paths, (first, second) = make_inputs(tmp_path)
    out = tmp_path / "out"
    # a model that does not exist: the refusal must come before the model is loaded
    argv = ["transcribe", "--model", str(tmp_path / "nope.pt"), "--format", "jsonl", "--output-dir", str(out)]
    assert main([*argv, *paths]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"asr: error: {first} and {second} would both be written to {out / 'x.jsonl'}; "
        "rename one or transcribe them in separate runs"
    ]
    assert not out.exists()


def test_colliding_outputs_are_refused_before_importing_torch(tmp_path):
    paths, _ = same_name_in_two_folders(tmp_path)
    result = run_main_reporting_torch("transcribe", "--output-dir", str(tmp_path / "out"), *paths)
    assert result.returncode == 1 and "would both be written to" in result.stderr
    assert result.stdout.splitlines() == ["torch imported: False"]


@pytest.mark.parametrize("form", ["exported", "checkpoint"])
def test_decoding_options_override_the_models_own_and_nothing_else(form):
    from asr.cli import BUNDLED_CHECKPOINT, BUNDLED_MODEL, _transcriber

    model = BUNDLED_MODEL if form == "exported" else BUNDLED_CHECKPOINT
    own = _transcriber(build_parser().parse_args(["transcribe", "--model", str(model), "a.wav"])).decoding
    args = build_parser().parse_args(["transcribe", "--model", str(model), "--beam-threshold", "3.5",
                                      "--word-score", "1.5", "a.wav"])
    decoding = _transcriber(args).decoding
    assert (decoding.beam_threshold, decoding.word_score) == (3.5, 1.5) != (own.beam_threshold, own.word_score)
    assert (decoding.decoder, decoding.beam_size, decoding.rnnlm_weight) == (own.decoder, own.beam_size, own.rnnlm_weight)


def test_what_transcribe_prints_is_scored_by_file_name_as_a_pipe_or_a_file(tmp_path):
    import shutil

    repo = Path(__file__).resolve().parents[1]
    audio = tmp_path / "an406-fcaw-b.wav"  # an AN4-style file name: the manifest's id
    shutil.copy(repo / "examples" / "an4_test_example.wav", audio)
    ref = tmp_path / "ref.jsonl"
    ref.write_text(json.dumps({"id": "an406-fcaw-b", "audio": "elsewhere.wav", "duration": 2.4,
                               "text": "J P E G FOUR"}) + "\n")
    asr = str(Path(sys.executable).with_name("asr"))
    for fmt in ("jsonl", "text"):
        piped = subprocess.run(f"'{asr}' transcribe --format {fmt} '{audio}' | '{asr}' score --ref '{ref}' --hyp -",
                               shell=True, capture_output=True, encoding="utf-8", timeout=300)
        assert piped.returncode == 0, piped.stderr
        assert piped.stdout.splitlines()[0].startswith("WER 20.00%  (1 errors / 5 words")  # J T E G FOUR
        written = tmp_path / f"hyp.{fmt}"
        written.write_text(run_asr("transcribe", "--format", fmt, str(audio)).stdout)
        assert run_asr("score", "--ref", str(ref), "--hyp", str(written)).stdout == piped.stdout
    record = json.loads((tmp_path / "hyp.jsonl").read_text())
    assert record["id"] == "an406-fcaw-b" and record["audio"] == str(audio)


def test_the_transcribe_help_says_what_a_confidence_means_and_does_not():
    help_text = " ".join(run_asr("transcribe", "--help").stdout.split())
    assert "not the chance the word was said" in help_text and "outside a model's vocabulary" in help_text


def test_a_reader_that_closes_the_pipe_stops_the_command_quietly(tmp_path):
    """`asr score ... | head -1`: the reader leaves early; no "Broken pipe" error, exit 141 as a shell reports it."""
    ref = tmp_path / "ref.jsonl"
    ref.write_text("".join(json.dumps({"id": f"u{n}", "text": "YES NO"}) + "\n" for n in range(200)))
    result = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {sys.executable} -m asr score --ref {ref} --hyp {ref} "
         "--report /dev/stdout | head -c 0"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 141, result.stderr
    assert "error" not in result.stderr.lower(), result.stderr
