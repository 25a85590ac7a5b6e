#!/usr/bin/env bash
# The pictures in docs/recipes.md, made from committed inputs (needs the plot extra: pip install 'asr[plot]'):
#   an4_blstm_run.png       `asr plot run` of an4_blstm_metrics.csv.gz, the metrics.csv of the 80-epoch
#                           AN4 run of conf/an4_blstm.yaml, seed 1 (recipes/an4/RESULTS.md: the default config, seed 1)
#   an4_test_example.png    `asr plot audio` of examples/an4_test_example.wav with the bundled model
#
#   bash docs/figures/make_figures.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
python=${PYTHON:-python}
$python -m asr plot run docs/figures/an4_blstm_metrics.csv.gz --out docs/figures/an4_blstm_run.png
$python -m asr plot audio examples/an4_test_example.wav --out docs/figures/an4_test_example.png
