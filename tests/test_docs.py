"""README.md and docs/: the commands shown run as written, the links resolve, the figures are the
ones in the result files they link, and docs/cli.md is what the argument parser gives.

Conventions the README follows (so that these tests can check it):
- fenced `bash` blocks hold commands that run as written from the repository root of a fresh
  clone; `# -> TEXT` after a command is text its output contains;
- a figure is a link to the result file it comes from, `[9.31](bench/results/NAME.json "KEY: VALUE;
  ...")`; the keys pick the record in that file (any dict in it whose KEYs equal the VALUEs),
  `field: NAME` the number (default `wer`, written as a percentage). In a table, the keys of the
  row's first link apply to the whole row, and a condition column (CONDITIONS) adds its condition;
  the "mean of 15" column averages the record over every condition;
- `TBD-english` marks a figure of the general-English model that does not exist yet: its row is
  skipped while that model is not installed, and any marker left once it is fails.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from asr.bundled import BUNDLED

from .conftest import SHARED  # README commands may read the prepared corpora

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
TBD = "TBD-english"
ENGLISH = BUNDLED["english"]
ENGLISH_INSTALLED = ENGLISH.available  # asr/pretrained/english_blstm/onnx/manifest.json exists
SPEECHOCEAN_AUDIO = "../shared/data/speechocean762/WAVE/"
COMMAND_TIMEOUT = 120  # seconds, each README command that runs

# README results-table columns -> bench/robustness.py's condition names
CONDITIONS = {
    "clean": "clean", "30 dB quieter": "gain_-30dB", "white noise 10 dB": "white_10dB",
    "pink noise 10 dB": "pink_10dB", "babble 10 dB": "babble_10dB", "room RT60 0.4 s": "reverb_rt60_0.4",
    "room RT60 0.8 s": "reverb_rt60_0.8", "telephone": "telephone_mulaw", "trimmed": "trimmed",
    "recorded noise 10 dB": "real_noise_10dB",
}
MEAN_COLUMN = "mean of 15"
PERCENT_FIELDS = {"wer", "cer"}  # stored as fractions in the result files

FENCE = re.compile(r"^```[^\n]*\n.*?^```[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[((?:[^\[\]]|\[[^\]]*\])*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"([^\"]*)\")?\s*\)")
NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")


# --- Markdown --------------------------------------------------------------------------------

def without_code(text: str) -> str:
    """The text with fenced blocks and code spans blanked (links there are not links)."""
    return CODE_SPAN.sub("``", FENCE.sub("", text))


def links(text: str) -> list[tuple[str, str, str]]:
    """(link text, target, title) of every link in markdown text."""
    return [(m.group(1), m.group(2), m.group(3) or "") for m in LINK.finditer(text)]


def anchors(text: str) -> set[str]:
    """The heading anchors GitHub makes: lower case, punctuation dropped, spaces to hyphens, -N for repeats."""
    found, seen = set(), {}
    for line in FENCE.sub("", text).splitlines():
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        title = re.sub(r"\[((?:[^\[\]]|\[[^\]]*\])*)\]\([^)]*\)", r"\1", heading.group(1))
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """(header cells, rows of cells) of every table outside fenced blocks."""
    found, block = [], []
    for line in FENCE.sub("", text).splitlines() + [""]:
        if line.lstrip().startswith("|"):
            block.append(line)
            continue
        if len(block) >= 2 and set(block[1].replace("|", "").strip()) <= set("-: "):
            found.append((cells(block[0]), [cells(row) for row in block[2:]]))
        block = []
    return found


def title_keys(title: str) -> dict[str, str]:
    """'system: x; split: test' -> {'system': 'x', 'split': 'test'}."""
    keys = {}
    for part in filter(None, (p.strip() for p in title.split(";"))):
        key, sep, value = part.partition(": ")
        assert sep, f"link title {title!r}: expected 'KEY: VALUE; ...'"
        keys[key] = value
    return keys


# --- Result files ----------------------------------------------------------------------------

def records(data, keys: dict[str, str]):
    """Every dict inside a result file whose `keys` all equal the values given."""
    if isinstance(data, dict):
        if all(k in data and str(data[k]) == v for k, v in keys.items()):
            yield data
        for value in data.values():
            yield from records(value, keys)
    elif isinstance(data, list):
        for value in data:
            yield from records(value, keys)


def figure(target: str, keys: dict[str, str], mean: bool) -> float:
    """The number a figure's link names in its result file (a percentage for wer/cer)."""
    path = REPO / target.partition("#")[0]
    data = json.loads(path.read_text(encoding="utf-8"))
    keys = dict(keys)
    field = keys.pop("field", "wer")
    found = [r for r in records(data, keys) if field in r]
    if mean:
        found = [r for r in found if "condition" in r]
        conditions = data.get("results", {}).get("conditions") or sorted({r["condition"] for r in found})
        assert sorted(r["condition"] for r in found) == sorted(conditions), \
            f"{target} {keys}: expected one {field} per condition, found {len(found)}"
        value = sum(r[field] for r in found) / len(found)
    else:
        assert len(found) == 1, (f"{target} {keys}: {len(found)} records with {field}, expected exactly one "
                                 "(does the row's first link name them: title \"system: ...; split: ...\"?)")
        value = found[0][field]
    return value * 100 if field in PERCENT_FIELDS else value


def check_figure(text: str, target: str, keys: dict[str, str], mean: bool, where: str) -> None:
    decimals = len(text.partition(".")[2])
    value = figure(target, keys, mean)
    assert f"{value:.{decimals}f}" == text, f"{where}: README says {text}, {target} {keys} gives {value}"


def is_result_figure(text: str, target: str) -> bool:
    return target.startswith("bench/results/") and bool(NUMBER.match(text))


# --- Figures ---------------------------------------------------------------------------------

def test_every_figure_in_the_readme_is_the_one_in_the_result_file_it_links():
    text = README.read_text(encoding="utf-8")
    checked = 0
    for header, rows in tables(text):
        for row in rows:
            where = f"README table row {row[0]!r}"
            if any(TBD in cell for cell in row):
                if not ENGLISH_INSTALLED:
                    continue  # the general-English model's figures are filled in once it is installed
                pytest.fail(f"{where}: {TBD} left although {ENGLISH.exported} is installed")
            first = links(row[0])
            row_keys = title_keys(first[0][2]) if first and first[0][2] else {}
            for column, cell in zip(header, row):
                for link_text, target, title in links(cell):
                    if not is_result_figure(link_text, target):
                        continue
                    keys = {**row_keys, **title_keys(title)}
                    if column in CONDITIONS:
                        keys.setdefault("condition", CONDITIONS[column])
                    check_figure(link_text, target, keys, column == MEAN_COLUMN, f"{where}, column {column!r}")
                    checked += 1
                if column in CONDITIONS or column == MEAN_COLUMN:  # the results table: every figure links its file
                    assert any(is_result_figure(t, g) for t, g, _ in links(cell)), \
                        f"{where}, column {column!r}: {cell!r} is not a figure linking its result file"
    in_tables = {line for line in text.splitlines() if line.lstrip().startswith("|")}
    prose = "\n".join(line for line in text.splitlines() if line not in in_tables)
    for link_text, target, title in links(prose):
        if is_result_figure(link_text, target):
            check_figure(link_text, target, title_keys(title), False, "README text")
            checked += 1
    assert checked >= 20, f"only {checked} figures checked: has the results table moved?"


def test_the_model_sizes_in_the_readme_are_the_bundled_folders_sizes():
    for header, rows in tables(README.read_text(encoding="utf-8")):
        if "size" not in header:
            continue
        column = header.index("size")
        names = {row[0]: name for row in rows for name in BUNDLED if f"`{name}`" in row[0]}
        installed = {name for name, model in BUNDLED.items() if model.available}
        assert set(names.values()) == installed, f"the model table lists {sorted(names.values())}"
        for row in rows:
            model = BUNDLED[names[row[0]]]
            if row[column] == TBD and not model.available:
                continue
            assert row[column] == f"{model.size_mb():.1f} MB", (model.name, row[column])
        return
    pytest.fail("README has no model table with a size column")


def test_the_readme_model_card_and_asr_models_give_the_an4_model_the_same_test_wer():
    """The README's figure (from the robustness result), the model card's (tests/test_published_numbers.py
    checks it against a fresh decode of AN4 test) and info.json's (what `asr models` prints) agree."""
    from .test_published_numbers import card_test_wers

    for header, rows in tables(README.read_text(encoding="utf-8")):
        if "size" in header:
            (row,) = [r for r in rows if "`an4`" in r[0]]
            (readme,) = [float(t) for t, g, _ in links(row[header.index("test WER %")]) if is_result_figure(t, g)]
            break
    else:
        pytest.fail("README has no model table")
    model_card = BUNDLED["an4"].folder / "MODEL_CARD.md"
    card = card_test_wers(model_card.read_text(encoding="utf-8"), str(model_card))["beam_lm"]
    info = BUNDLED["an4"].info()["test_wer"]["AN4 test"]
    assert readme == card == info


def test_no_tbd_marker_is_left_once_the_english_model_is_installed():
    if not ENGLISH_INSTALLED:
        pytest.skip(f"{ENGLISH.exported} not installed: its figures are still to come")
    for path in [README, *sorted(DOCS.glob("*.md"))]:
        assert TBD not in path.read_text(encoding="utf-8"), f"{path.relative_to(REPO)} still says {TBD}"


# --- Links -----------------------------------------------------------------------------------

def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(path):
    text = path.read_text(encoding="utf-8")
    checked = 0
    for _, target, _ in links(without_code(text)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        assert dest.is_relative_to(REPO), f"{path.name}: {target} points outside the repository"
        if dest.is_relative_to(ENGLISH.folder.resolve()) and not ENGLISH_INSTALLED:
            continue  # the general-English model's files arrive with it
        assert dest.exists(), f"{path.relative_to(REPO)}: link to {target}, which does not exist"
        if anchor and dest.suffix == ".md":
            assert anchor in anchors(dest.read_text(encoding="utf-8")), \
                f"{path.relative_to(REPO)}: link to {target}: no heading with that anchor"
        checked += 1
    assert checked or path != README


def test_the_anchor_slugs_are_githubs():
    assert anchors("## LibriSpeech (`recipes/librispeech/run.sh`)\n## Errors and recovery\n## Errors and recovery") == {
        "librispeech-recipeslibrispeechrunsh", "errors-and-recovery", "errors-and-recovery-1"}


# --- The README's shape --------------------------------------------------------------------

def test_the_readme_is_short_and_starts_with_what_a_new_user_needs():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    headings = [line[3:].lower() for line in text.splitlines() if line.startswith("## ")]
    for wanted, heading in zip(("install", "quick start", "transcribe", "train"), headings):
        assert wanted in heading, headings


# --- Commands --------------------------------------------------------------------------------

def readme_commands() -> list[str]:
    """Every command line of the README's bash blocks (continuation lines joined)."""
    commands = []
    for block in re.finditer(r"^```(?:bash|sh|shell)[ \t]*\n(.*?)^```", README.read_text(encoding="utf-8"), re.M | re.S):
        for line in block.group(1).replace("\\\n", " ").splitlines():
            if line.strip() and not line.strip().startswith("#"):
                commands.append(line.strip())
    return commands


def kind(command: str) -> str:
    """setup (install, tests: what CI runs), recipe (long: checked, not run), asr (parsed; run when quick)."""
    words = shlex.split(command, comments=True)
    if words[:3] in (["python3", "-m", "venv"], ["python", "-m", "pip"], ["python", "-m", "pytest"]):
        return "setup"
    if words[:1] == ["bash"] and words[1].startswith("recipes/"):
        return "recipe"
    if words[:1] == ["asr"]:
        return "asr"
    raise AssertionError(f"README command not classified by tests/test_docs.py (run, recipe or setup?): {command}")


def quick(words: list[str]) -> bool:
    """asr commands that run in a second or two: help, the model list, transcribing with a bundled model."""
    if "--help" in words or "-h" in words or words[1:2] == ["models"]:
        return True
    if words[1:2] == ["transcribe"]:
        model = words[words.index("--model") + 1] if "--model" in words else None
        return model is None or model in BUNDLED
    return False


def expected_output(command: str) -> str | None:
    match = re.search(r"#\s*->\s*(.+?)\s*$", command)
    return match.group(1) if match else None


def repo_paths_exist(words: list[str], command: str) -> None:
    for word in words:
        for part in word.split("="):
            if part.startswith(("conf/", "examples/", "asr/pretrained/", "recipes/", "bench/")):
                if part.startswith("asr/pretrained/english_blstm") and not ENGLISH_INSTALLED:
                    continue
                assert (REPO / part).exists(), f"{command}: {part} does not exist"


@pytest.fixture(scope="module")
def fresh_clone(tmp_path_factory) -> Path:
    """A folder that looks like the repository root (its entries linked), so that the files a command
    writes land in a temporary folder."""
    root = tmp_path_factory.mktemp("clone")
    if SHARED.is_dir() and not (root.parent / "shared").exists():
        (root.parent / "shared").symlink_to(SHARED)  # ../shared seen from the clone, as from the repository
    for entry in REPO.iterdir():
        if not entry.name.startswith(".") and entry.name not in ("exp", "build", "dist"):
            (root / entry.name).symlink_to(entry)
    return root


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command(command, fresh_clone):
    words = shlex.split(command, comments=True)
    what = kind(command)
    repo_paths_exist(words, command)
    if what == "setup":
        return  # test_the_readme_install_and_test_commands_are_what_ci_runs
    if what == "recipe":
        script = (REPO / words[1]).read_text(encoding="utf-8")
        for option in (w for w in words[2:] if w.startswith("--")):
            assert f"{option})" in script, f"{command}: {words[1]} takes no {option}"
        return  # hours of training: not run here
    from asr.cli import build_parser

    try:
        build_parser().parse_args(words[1:]) if "--help" not in words else None
    except SystemExit:
        pytest.fail(f"README command does not parse: {command}")
    if not quick(words):
        return
    shared_paths = [w for w in words if w.startswith("../shared/")]
    if any(not (REPO / w).exists() for w in shared_paths):
        pytest.skip(f"{', '.join(shared_paths)}: the prepared corpora (../shared/data) are absent")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(["bash", "-c", command], cwd=fresh_clone, env=env, capture_output=True, text=True,
                            timeout=COMMAND_TIMEOUT)
    assert result.returncode == 0, f"{command}\n{result.stderr}"
    expected = expected_output(command)
    if expected is None:
        return
    if TBD in expected:
        assert not ENGLISH_INSTALLED, f"{command}: fill in the output the english model gives"
        return
    assert expected in result.stdout, f"{command}: expected {expected!r} in\n{result.stdout}"


def test_the_readme_runs_its_quick_start():
    quick_ones = [c for c in readme_commands() if kind(c) == "asr" and quick(shlex.split(c, comments=True))]
    assert any("transcribe" in c and "examples/an4_test_example.wav" in c and expected_output(c) for c in quick_ones)
    # An ordinary English sentence the bundled english model writes: a speechocean762 clip (the project
    # ships no corpus audio; the command runs, and its output is checked, where ../shared is present)
    assert any("transcribe" in c and SPEECHOCEAN_AUDIO in c and "--model" not in c and expected_output(c)
               for c in quick_ones)


def test_the_readme_install_and_test_commands_are_what_ci_runs():
    ci_lines = {" ".join(line.replace(" --quiet", "").split()) for line in (REPO / ".ci" / "run").read_text().splitlines()}
    setup = [c for c in readme_commands() if kind(c) == "setup"]
    assert "python -m pytest -q" in setup
    assert any("pip install -e '.[test]'" in c for c in setup)
    for command in setup:
        for part in command.split("&&"):
            assert " ".join(part.split()) in ci_lines, f"README's {part.strip()!r} is not what .ci/run runs"


# --- docs/cli.md -----------------------------------------------------------------------------

def test_cli_md_is_what_the_argument_parser_gives():
    spec = importlib.util.spec_from_file_location("make_cli_md", DOCS / "make_cli_md.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (DOCS / "cli.md").read_text(encoding="utf-8") == module.render(), \
        "docs/cli.md is out of date: run python docs/make_cli_md.py"
