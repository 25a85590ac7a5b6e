"""recipes/lib/stages.sh: extract_archive checks a downloaded archive before untarring it, and the
recipes' stage 0 goes through it."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
from pathlib import Path

from .conftest import REPO

STAGES = REPO / "recipes" / "lib" / "stages.sh"
TRAIN_CLEAN_100_SHA256 = "d4ddd1d5a6ab303066f14971d768ee43278a5f2a0aa43dc716b0e64ecbbbf6e2"  # torchaudio's


def make_tarball(path: Path, top: str = "corpus") -> Path:
    """A small .tar.gz holding top/etc/readme.txt."""
    source = path.parent / f"{path.name}.src" / top
    (source / "etc").mkdir(parents=True)
    (source / "etc" / "readme.txt").write_text("hello\n")
    with tarfile.open(path, "w:gz") as tar:
        tar.add(source, arcname=top)
    shutil.rmtree(source.parent)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def extract_archive(archive: Path, dest: Path, *expected: str) -> subprocess.CompletedProcess:
    dest.mkdir(exist_ok=True)
    script = 'set -euo pipefail; . "$1"; shift; extract_archive "$@"'
    return subprocess.run(["bash", "-c", script, "bash", str(STAGES), str(archive), str(dest), *expected],
                          capture_output=True, text=True, timeout=60)


def test_an_archive_matching_its_checksum_is_extracted(tmp_path):
    archive = make_tarball(tmp_path / "corpus.tar.gz")
    result = extract_archive(archive, tmp_path / "out", sha256(archive))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "corpus" / "etc" / "readme.txt").read_text() == "hello\n"


def test_a_checksum_mismatch_is_refused_in_one_line_and_nothing_is_extracted(tmp_path):
    archive = make_tarball(tmp_path / "corpus.tar.gz")
    published = "0" * 64
    result = extract_archive(archive, tmp_path / "out", published)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"run.sh: {archive}: sha256 {sha256(archive)}, expected {published} (a corrupt or tampered download); "
        "delete it and run again, or pass --data-dir with a copy you trust"
    ]
    assert list((tmp_path / "out").iterdir()) == []


def test_without_a_checksum_a_complete_archive_is_extracted(tmp_path):
    archive = make_tarball(tmp_path / "corpus.tar.gz")
    result = extract_archive(archive, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "corpus" / "etc" / "readme.txt").is_file()


def test_without_a_checksum_a_truncated_archive_is_refused_and_nothing_is_extracted(tmp_path):
    archive = make_tarball(tmp_path / "corpus.tar.gz")
    archive.write_bytes(archive.read_bytes()[:-40])  # a download cut short
    result = extract_archive(archive, tmp_path / "out")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"run.sh: {archive}: not a complete .tar.gz archive (truncated or corrupt download); "
        "delete it and run again, or pass --data-dir with a local copy"
    ]
    assert list((tmp_path / "out").iterdir()) == []


def recipe_tree(tmp_path: Path) -> Path:
    """A copy of the recipes and configs, so the AN4 recipe does not find the corpus beside the repository."""
    root = tmp_path / "repo"
    for folder in ("recipes", "conf"):
        shutil.copytree(REPO / folder, root / folder)
    return root


def test_an4_stage_0_refuses_a_truncated_download(tmp_path):
    root = recipe_tree(tmp_path)
    download = tmp_path / "exp" / "download"
    download.mkdir(parents=True)
    archive = make_tarball(download / "an4_sphere.tar.gz", top="an4")
    archive.write_bytes(archive.read_bytes()[:-40])  # left by an earlier, interrupted download
    result = subprocess.run(["bash", str(root / "recipes" / "an4" / "run.sh"), "--exp-dir", str(tmp_path / "exp"),
                             "--stop-stage", "0"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"run.sh: {archive}: not a complete .tar.gz archive (truncated or corrupt download); "
        "delete it and run again, or pass --data-dir with a local copy"
    ]
    assert sorted(p.name for p in download.iterdir()) == ["an4_sphere.tar.gz"]


def test_librispeech_stage_0_refuses_an_archive_that_is_not_the_published_one(tmp_path):
    archives = tmp_path / "archives"
    archives.mkdir()
    archive = make_tarball(archives / "train-clean-100.tar.gz", top="LibriSpeech")
    exp = tmp_path / "exp"
    result = subprocess.run(["bash", str(REPO / "recipes" / "librispeech" / "run.sh"), "--archives-dir", str(archives),
                             "--exp-dir", str(exp), "--stop-stage", "0"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"run.sh: {archive}: sha256 {sha256(archive)}, expected {TRAIN_CLEAN_100_SHA256} "
        "(a corrupt or tampered download); delete it and run again, or pass --data-dir with a copy you trust"
    ]
    assert list((exp / "download").iterdir()) == []
