#!/usr/bin/env bash
# LibriSpeech end to end: data -> manifests -> vocab + CMVN + LM -> train -> decode + score -> RESULTS.md
#
#   bash recipes/librispeech/run.sh [--stage N] [--stop-stage M] [--data-dir DIR | --archives-dir DIR]
#        [--train-set 100|460|960] [--config conf/librispeech_blstm.yaml] [--gpus N] [--exp-dir DIR]
#        [--overrides "train.epochs=30"] [--lm-text librispeech-lm-norm.txt [--rnnlm-args "--max-vocab 50000"]]
#
# Stages: 0 obtain data (a local LibriSpeech/ tree, the OpenSLR .tar.gz archives, or a download),
#         1 manifests, 2 CMVN stats + vocabulary + n-gram LM, 3 train (torchrun when --gpus > 1),
#         4 tune the LM weights on dev-clean, decode (greedy, beam, beam + LM) and score.
# --lm-text: the LibriSpeech LM corpus (openslr.org/11, librispeech-lm-norm.txt, one sentence a line)
#   or any domain text: stage 2 also trains a recurrent word LM on it (on the CPU: a few million lines
#   are plenty, e.g. head -n 2000000), stage 4 fuses it with the n-gram.
# Each stage skips work that is already done, so a killed recipe resumes where it stopped.
# For several nodes, run stage 3 yourself with torchrun --nnodes ... (see README).
set -euo pipefail

stage=0
stop_stage=4
data_dir=""
archives_dir=""
train_set=100
config=conf/librispeech_blstm.yaml
gpus=1
overrides=""
rnnlm_text=""
rnnlm_args="--max-vocab 50000"
exp=exp/librispeech
python=${PYTHON:-python}
openslr=https://www.openslr.org/resources/12
declare -A archive_sha256=(  # of the OpenSLR archives, as torchaudio publishes them (torchaudio/datasets/librispeech.py)
  [dev-clean]=76f87d090650617fca0cac8f88b9416e0ebf80350acb97b343a85fa903728ab3
  [dev-other]=12661c48e8c3fe1de2c1caa4c3e135193bfb1811584f11f569dd12645aa84365
  [test-clean]=39fde525e59672dc6d1551919b1478f724438a95aa55f874b576be21967e6c23
  [test-other]=d09c181bba5cf717b3dee7d4d592af11a3ee3a09e08ae025c5506f6ebe961c29
  [train-clean-100]=d4ddd1d5a6ab303066f14971d768ee43278a5f2a0aa43dc716b0e64ecbbbf6e2
  [train-clean-360]=146a56496217e96c14334a160df97fffedd6e0a04e66b9c5af0d40be3c792ecf
  [train-other-500]=ddb22f27f96ec163645d53215559df6aa36515f26e01dd70798188350adcb6d2
)

while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --data-dir) data_dir=$2; shift 2 ;;
    --archives-dir) archives_dir=$2; shift 2 ;;
    --train-set) train_set=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --gpus) gpus=$2; shift 2 ;;
    --overrides) overrides=$2; shift 2 ;;
    --lm-text) rnnlm_text=$2; shift 2 ;;
    --rnnlm-args) rnnlm_args=$2; shift 2 ;;
    --exp-dir) exp=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

case $train_set in
  100) train_subsets="train-clean-100" ;;
  460) train_subsets="train-clean-100 train-clean-360" ;;
  960) train_subsets="train-clean-100 train-clean-360 train-other-500" ;;
  *) echo "run.sh: --train-set must be 100, 460 or 960" >&2; exit 2 ;;
esac
eval_subsets="dev-clean dev-other test-clean test-other"

caller=$PWD
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=../lib/stages.sh
. "$root/recipes/lib/stages.sh"
[ -z "$data_dir" ] || data_dir=$(absolute "$data_dir")
[ -z "$archives_dir" ] || archives_dir=$(absolute "$archives_dir")
[ -z "$rnnlm_text" ] || rnnlm_text=$(absolute "$rnnlm_text")
[ "$exp" = exp/librispeech ] || exp=$(absolute "$exp")
resolve_config
cd "$root"

data=$exp/data
run_name=$(basename "$config" .yaml); run_name=${run_name#librispeech_}_$train_set
run_dir=$exp/$run_name
train_split=train_$train_set
stats_dir=$data/$train_split  # vocabulary, CMVN and LM belong to one training set
dev_split=dev-clean
eval_splits=$eval_subsets
recipe_command="bash recipes/librispeech/run.sh --train-set $train_set --config $config_arg --gpus $gpus${overrides:+ --overrides \"$overrides\"}"
[ "$gpus" -le 1 ] || train_launcher="torchrun --standalone --nproc_per_node $gpus -m asr"
mkdir -p "$data" "$run_dir"

has_subsets() { local s; for s in $train_subsets $eval_subsets; do [ -d "$1/$s" ] || return 1; done; }

obtain_corpus() {  # sets data_dir, records it in $data/corpus_dir
  if [ -n "$data_dir" ]; then
    has_subsets "$data_dir" || { echo "run.sh: $data_dir lacks some of: $train_subsets $eval_subsets" >&2; exit 1; }
  else
    data_dir=$exp/download/LibriSpeech
    mkdir -p "$exp/download"
    for subset in $train_subsets $eval_subsets; do
      [ -d "$data_dir/$subset" ] && continue
      archive=$exp/download/$subset.tar.gz
      if [ -n "$archives_dir" ] && [ -f "$archives_dir/$subset.tar.gz" ]; then
        archive=$archives_dir/$subset.tar.gz
      else
        download "$openslr/$subset.tar.gz" "$archive" "pass --data-dir or --archives-dir"
      fi
      extract_archive "$archive" "$exp/download" "${archive_sha256[$subset]}" || exit 1
    done
  fi
  (cd "$data_dir" && pwd) > "$data/corpus_dir"
  echo "  corpus: $(cat "$data/corpus_dir")"
}

make_manifests() {
  if [ -f "$data/.manifests_$train_set.done" ]; then
    echo "  already done ($data/*.jsonl)"
  else
    [ -f "$data/corpus_dir" ] || { echo "run.sh: run stage 0 first" >&2; exit 1; }
    # shellcheck disable=SC2086  # lists of subsets
    $python recipes/librispeech/local/prepare.py --data-dir "$(cat "$data/corpus_dir")" --out-dir "$data" \
      --subsets $train_subsets $eval_subsets
    # shellcheck disable=SC2086
    (cd "$data" && cat $(printf '%s.jsonl ' $train_subsets)) > "$data/$train_split.jsonl"
    touch "$data/.manifests_$train_set.done"
  fi
}

run_stage 0 "obtain LibriSpeech ($train_subsets $eval_subsets)" obtain_corpus
run_stage 1 "manifests" make_manifests
run_stage 2 "CMVN stats, vocabulary and n-gram LM (from training transcripts only)" stage_stats
run_stage 2 "recurrent LM on ${rnnlm_text:-(no --lm-text given)}" stage_rnnlm
run_stage 3 "train ($config -> $run_dir, $gpus GPU(s))" stage_train
run_stage 4 "tune LM weights on $dev_split, decode and score" stage_score
