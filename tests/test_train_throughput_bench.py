"""bench/train_throughput.py's variants: what each name asks for, the ceiling model, and each row's
fraction of the ceiling (the GPU rows themselves run only on a GPU machine: bench/gpu_checks.sh)."""

from __future__ import annotations

import pytest
import torch

from asr.model import ModelConfig

from .conftest import bench_module


@pytest.fixture(scope="module")
def bench():
    with bench_module("train_throughput") as module:
        yield module


def test_variant_names_say_device_precision_cudnn_batches_and_source(bench):
    parse = bench.Variant.parse
    assert parse("bucketed") == bench.Variant("bucketed", "cpu", "fp32", True, "bucketed", "pipeline", "default")
    assert parse("cuda_fp16").precision == "fp16" and parse("cuda_fp16").device == "cuda"
    nocudnn = parse("cuda_bf16_nocudnn")
    assert (nocudnn.precision, nocudnn.cudnn, nocudnn.label) == ("bf16", False, "cuda bf16 no-cudnn")
    assert parse("cuda_bf16_random").batches == "random"
    assert parse("cuda_fp32_preloaded").source == "preloaded"
    assert parse("cuda_ceiling_bf16").source == "ceiling" and parse("ceiling").device == "cpu"
    assert parse("packed").model == "packed" and parse("compiled").model == "compiled"
    every = [parse(name) for name in bench.CPU_VARIANTS + bench.CUDA_VARIANTS if not name.startswith("data")]
    meanings = {(v.device, v.precision, v.cudnn, v.batches, v.source, v.model) for v in every}
    assert len(meanings) == len(every)  # no two variants measure the same thing


def test_each_row_gets_its_fraction_of_the_ceiling_of_the_same_device_and_precision(bench):
    rows = [{"variant": "cuda_bf16", "audio_s_per_s": 300.0}, {"variant": "cuda_fp32", "audio_s_per_s": 100.0},
            {"variant": "cuda_ceiling_bf16", "audio_s_per_s": 400.0}, {"variant": "cuda_fp16", "error": "exit 1"}]
    for row in rows:
        bench.add_ceiling_fraction(row, rows)
    assert rows[0]["of_ceiling"] == 0.75
    assert "of_ceiling" not in rows[1]  # no fp32 ceiling measured
    assert "of_ceiling" not in rows[2] and "of_ceiling" not in rows[3]


def test_the_ceiling_is_one_recurrent_stack_of_the_default_models_shapes(bench):
    config = ModelConfig(num_layers=2, hidden_size=16, frame_stack=3)
    ceiling = bench.CeilingModel(config, input_dim=8)
    assert ceiling.rnn.num_layers == 2 and ceiling.rnn.hidden_size == 16 and ceiling.rnn.input_size == 24
    outputs, lens = ceiling(torch.randn(2, 30, 8), torch.tensor([30, 21]))
    assert outputs.shape == (2, 10, 32) and lens.tolist() == [10, 7]


def test_repeated_runs_keep_the_median_run_and_list_every_runs_throughput(bench):
    runs = [{"variant": "bucketed", "audio_s_per_s": value, "steps": i} for i, value in enumerate([90.0, 120.0, 85.0])]
    row = bench.median_run(runs)
    assert row["audio_s_per_s"] == 90.0 and row["steps"] == 0  # the whole median run, not a mix of runs
    assert row["audio_s_per_s_runs"] == [90.0, 120.0, 85.0]
    failed = {"variant": "bucketed", "error": "exit 1"}
    assert bench.median_run([failed, runs[1]])["audio_s_per_s"] == 120.0  # a failed run does not count
    assert bench.median_run([failed]) == failed
    assert "audio_s_per_s_runs" not in bench.median_run(runs[:1])  # one run: the row as before
