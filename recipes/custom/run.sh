#!/usr/bin/env bash
# Your own corpus end to end, no code: import + validate -> vocab + CMVN + LM -> train -> decode + score -> RESULTS.md
#
#   bash recipes/custom/run.sh --train SRC [--dev SRC] [--test SRC] [--exp-dir exp/custom] [--name RUN]
#                              [--config conf/an4_blstm.yaml] [--overrides "train.epochs=20"]
#                              [--dev-fraction 0.1] [--text normalise|keep] [--stage N] [--stop-stage M]
#
# SRC: a Kaldi/ESPnet data directory (wav.scp, text, optional segments and utt2spk) or a .csv/.tsv/.jsonl
# table of audio path + transcript (see `asr data import --help`). Without --dev, whole speakers of
# --train are held out as dev (--dev-fraction of its utterances). The run is <exp-dir>/RUN, by default
# named after the data and the config: --train ~/corpora/kids/train with conf/an4_blstm.yaml -> kids_blstm. Problems in the data are reported
# with their file and line, and the affected utterances are left out (the run goes on).
# Stages: 1 import + validate (manifests), 2 CMVN stats + vocabulary + n-gram LM (training transcripts
#         only), 3 train, 4 tune the LM weights on dev, decode (greedy, beam, beam + LM) and score.
# Each stage skips work that is already done, so a killed recipe resumes.
set -euo pipefail

stage=1
stop_stage=4
train_src=""
dev_src=""
test_src=""
config=conf/an4_blstm.yaml
overrides=""
exp=exp/custom
dev_fraction=0.1
text_mode=normalise
run_name=""
python=${PYTHON:-python}

while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --train) train_src=$2; shift 2 ;;
    --dev) dev_src=$2; shift 2 ;;
    --test) test_src=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --overrides) overrides=$2; shift 2 ;;
    --exp-dir) exp=$2; shift 2 ;;
    --dev-fraction) dev_fraction=$2; shift 2 ;;
    --text) text_mode=$2; shift 2 ;;
    --name) run_name=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

caller=$PWD
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=../lib/stages.sh
. "$root/recipes/lib/stages.sh"
[ -n "$train_src" ] || { echo "run.sh: --train is required (a data directory or a table; see --help)" >&2; exit 2; }
train_src=$(absolute "$train_src")
[ -z "$dev_src" ] || dev_src=$(absolute "$dev_src")
[ -z "$test_src" ] || test_src=$(absolute "$test_src")
[ "$exp" = exp/custom ] || exp=$(absolute "$exp")
resolve_config
cd "$root"

data=$exp/data
if [ -z "$run_name" ]; then  # after the user's data (a split folder's corpus) and the config's model
  data_name=$(basename "$train_src"); data_name=${data_name%.*}
  case $data_name in train|training|train_*|data) data_name=$(basename "$(dirname "$train_src")") ;; esac
  config_name=$(basename "$config" .yaml)
  run_name=${data_name}_${config_name#an4_}
fi
run_dir=$exp/$run_name
train_split=train
dev_split=dev
eval_splits="dev${test_src:+ test}"
recipe_command="bash recipes/custom/run.sh --train $train_src${dev_src:+ --dev $dev_src}${test_src:+ --test $test_src} --config $config_arg${overrides:+ --overrides \"$overrides\"}"
mkdir -p "$data" "$run_dir"

import_split() {  # import_split SRC NAME [--vocab MANIFEST]: SRC -> $data/NAME.jsonl (segments cut to $data/NAME_wav/)
  local src=$1 name=$2
  shift 2
  echo "  $name: $src"
  if ! $python -m asr data import "$src" --out "$data/$name.jsonl" --text "$text_mode" "$@" 2>&1 \
      | tee "$data/$name.problems.txt"; then
    echo "run.sh: nothing usable in $src (see $data/$name.problems.txt)" >&2
    exit 1
  fi
}

make_manifests() {
  if [ -f "$data/.manifests.done" ]; then
    echo "  already done ($data/*.jsonl)"
    return
  fi
  if [ -n "$dev_src" ]; then
    import_split "$train_src" train
    import_split "$dev_src" dev --vocab "$data/train.jsonl"
  else
    import_split "$train_src" all
    $python -m asr data split "$data/all.jsonl" --dev-fraction "$dev_fraction" \
      --train-out "$data/train.jsonl" --dev-out "$data/dev.jsonl"
  fi
  # characters the training transcripts never use are reported (the model cannot produce them)
  [ -z "$test_src" ] || import_split "$test_src" test --vocab "$data/train.jsonl"
  touch "$data/.manifests.done"
}

run_stage 1 "import and validate the corpus (manifests in $data)" make_manifests
run_stage 2 "CMVN stats, vocabulary and n-gram LM (from training transcripts only)" stage_stats
run_stage 3 "train ($config -> $run_dir)" stage_train
run_stage 4 "tune LM weights on dev, decode and score" stage_score
