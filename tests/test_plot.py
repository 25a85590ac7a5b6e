"""`asr plot run` and `asr plot audio` (asr.plot): a PNG of the promised size, or a clean error without matplotlib."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

from asr.cli import BUNDLED_CHECKPOINT, main
from asr.plot import PIXELS

from .conftest import REPO, make_tone_experiment, tiny_config, write_config

EXAMPLE = REPO / "examples" / "an4_test_example.wav"
BLOCK_MATPLOTLIB = "import sys; sys.modules['matplotlib'] = None; from asr.cli import main; sys.exit(main())"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A real two-epoch training run on tones (metrics.csv with loss, lr, grad norms, dev WER)."""
    tmp = tmp_path_factory.mktemp("plot_run")
    config = write_config(tmp / "c.yaml", tiny_config(make_tone_experiment(tmp), tmp / "run", epochs=2, max_frames=300,
                                                      threads=1, tensorboard=False))
    assert main(["train", "--config", str(config), "--no-progress"]) == 0
    return tmp / "run"


def test_plot_run_writes_a_png_of_the_promised_size(run_dir, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "run.png"
    assert main(["plot", "run", str(run_dir), "--out", str(out)]) == 0
    assert png_size(out) == PIXELS and out.stat().st_size > 20_000
    assert main(["plot", "run", str(run_dir)]) == 0  # default: beside metrics.csv
    assert png_size(run_dir / "training.png") == PIXELS


def test_plot_run_of_a_folder_without_metrics_is_one_line(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert main(["plot", "run", str(tmp_path), "--out", str(tmp_path / "x.png")]) == 1
    assert capsys.readouterr().err.strip() == (f"asr: error: {tmp_path / 'metrics.csv'}: no such file "
                                               "(a training run's folder has metrics.csv)")
    assert not (tmp_path / "x.png").exists()


def test_plot_audio_writes_a_png_of_the_promised_size(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "audio.png"
    assert main(["plot", "audio", str(EXAMPLE), "--model", str(BUNDLED_CHECKPOINT), "--out", str(out)]) == 0
    assert png_size(out) == PIXELS and out.stat().st_size > 50_000


@pytest.mark.parametrize("what", ["run", "audio"])
def test_plot_without_matplotlib_fails_cleanly(what, run_dir, tmp_path):
    out = tmp_path / "x.png"
    target = str(run_dir) if what == "run" else str(EXAMPLE)
    result = subprocess.run([sys.executable, "-c", BLOCK_MATPLOTLIB, "plot", what, target, "--out", str(out)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == ("asr: error: plotting needs matplotlib, which is not installed: "
                                     "pip install 'asr[plot]'")
    assert not out.exists()
