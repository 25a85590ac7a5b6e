#!/usr/bin/env bash
# AN4 end to end: data -> manifests -> vocab + CMVN + LM -> train -> decode + score -> RESULTS.md
#
#   bash recipes/an4/run.sh [--stage N] [--stop-stage M] [--data-dir DIR] [--config conf/an4_blstm.yaml]
#                           [--exp-dir exp/an4] [--dev-speakers 6] [--overrides "train.epochs=10 train.device=cpu"]
#
# Stages: 0 obtain data, 1 manifests, 2 CMVN stats + vocabulary + n-gram LM, 3 train,
#         4 tune the LM weights on dev, decode (greedy, beam, beam + LM) and score,
#         5 (only with --stop-stage 5) the final model: the same training on train + dev (all
#           training speakers), last epoch kept, test scored with stage 4's LM weights.
# Each stage skips work that is already done, so a killed recipe resumes where it stopped.
# Runs from any folder (relative --data-dir/--exp-dir are taken from the caller's folder);
# --exp-dir defaults to exp/an4 in the repository root.
set -euo pipefail

stage=0
stop_stage=4
data_dir=""
config=conf/an4_blstm.yaml
overrides=""
exp=exp/an4
dev_speakers=6
python=${PYTHON:-python}
an4_url=http://www.speech.cs.cmu.edu/databases/an4/an4_sphere.tar.gz
# No checksum of an4_sphere.tar.gz is published (not by CMU, nor by the ESPnet, Kaldi, NeMo or
# deepspeech.pytorch scripts that download it), so stage 0 checks only that the download is a
# complete .tar.gz (tar -tzf) before extracting it. Put a sha256 here once one is published.
an4_sha256=""

while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --data-dir) data_dir=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --overrides) overrides=$2; shift 2 ;;
    --exp-dir) exp=$2; shift 2 ;;
    --dev-speakers) dev_speakers=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

caller=$PWD
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=../lib/stages.sh
. "$root/recipes/lib/stages.sh"
[ -z "$data_dir" ] || data_dir=$(absolute "$data_dir")
[ "$exp" = exp/an4 ] || exp=$(absolute "$exp")
resolve_config
cd "$root"

data=$exp/data
run_name=$(basename "$config" .yaml); run_name=${run_name#an4_}
run_dir=$exp/$run_name
train_split=train
dev_split=dev
eval_splits="dev test"
recipe_command="bash recipes/an4/run.sh --config $config_arg${overrides:+ --overrides \"$overrides\"}"
mkdir -p "$data" "$run_dir"

is_an4() { [ -f "$1/etc/an4_train.fileids" ] && [ -f "$1/etc/an4_test.transcription" ]; }

# Stage 0 decides where the corpus is; later stages read that choice from $data/corpus_dir.
obtain_corpus() {  # sets data_dir, records it in $data/corpus_dir
  if [ -n "$data_dir" ]; then
    is_an4 "$data_dir" || { echo "run.sh: $data_dir is not an AN4 folder (needs etc/an4_*.fileids and wav/)" >&2; exit 1; }
  elif is_an4 ../shared/data/an4; then
    data_dir=../shared/data/an4
  elif is_an4 "$exp/download/an4"; then
    data_dir=$exp/download/an4
  else
    local archive=$exp/download/an4_sphere.tar.gz
    mkdir -p "$exp/download"
    download "$an4_url" "$archive" "pass --data-dir with a local copy of AN4"
    extract_archive "$archive" "$exp/download" "$an4_sha256" || exit 1
    data_dir=$exp/download/an4
  fi
  (cd "$data_dir" && pwd) > "$data/corpus_dir"
  echo "  corpus: $(cat "$data/corpus_dir")"
}

make_manifests() {
  if [ -f "$data/.manifests.done" ]; then
    echo "  already done ($data/*.jsonl)"
  else
    [ -f "$data/corpus_dir" ] || { echo "run.sh: run stage 0 first" >&2; exit 1; }
    $python recipes/an4/local/prepare.py --data-dir "$(cat "$data/corpus_dir")" --out-dir "$data" \
      --dev-speakers "$dev_speakers"
    touch "$data/.manifests.done"
  fi
}

run_stage 0 "obtain AN4" obtain_corpus
run_stage 1 "manifests" make_manifests
run_stage 2 "CMVN stats, vocabulary and n-gram LM (from training transcripts only)" stage_stats
run_stage 3 "train ($config -> $run_dir)" stage_train
run_stage 4 "tune LM weights on dev, decode and score" stage_score

final_model() {  # stages 3-4 again on train + dev; nothing is chosen on test, nothing retuned on dev
  [ -f "$run_dir/best_lm.pt" ] || { echo "run.sh: run stage 4 first (it tunes the LM weights)" >&2; exit 1; }
  cat "$data/train.jsonl" "$data/dev.jsonl" > "$data/train_dev.jsonl"
  local weights
  weights=$($python -c "import sys; from asr.checkpoint import load_model
d = load_model(sys.argv[1]).decoding; print(f'--lm-weights {d.lm_weight:g} --word-scores {d.word_score:g}')" \
    "$run_dir/best_lm.pt") || exit 1
  (
    run_dir=$run_dir/final train_split=train_dev eval_splits=test tune_args=$weights
    overrides="train.keep=last train.average_last=0 $overrides"
    results_note="Final model: the same training on train + dev (all training speakers), the last epoch kept; LM weights fixed to the values stage 4 tuned on dev ($weights)."
    mkdir -p "$run_dir"
    stage_train
    stage_score
  ) || exit 1
}
run_stage 5 "final model: train + dev, LM weights from stage 4, scored on test" final_model
