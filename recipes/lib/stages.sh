# Generic recipe stages, sourced by recipes/<dataset>/run.sh after it has set:
#   python, config, config_arg, overrides, data (manifests folder), run_dir,
#   train_split, dev_split, eval_splits (space-separated manifest names in $data),
#   recipe_command (how the recipe was called, for RESULTS.md)
# and optionally stats_dir (where vocab, CMVN and LM go; default $data), score_lm_dir (the n-gram LM +
# lexicon stage 4 tunes and decodes with; default the training-text LM <units>/lm), lm_description
# (how that LM was made, for RESULTS.md) and train_launcher
# (default "$python -m asr"; e.g. "torchrun --nproc_per_node 8 -m asr"), rnnlm_text (a text file,
# one sentence a line: stage 2 also trains a recurrent word LM on it, stage 4 fuses it with the
# n-gram, tuned around the n-gram's weights; character models only) and rnnlm_args (extra `asr lm --type lstm` options).
# Each stage skips finished work (.done markers, --resume, existing files).

absolute() {  # a path as the caller meant it: relative ones are taken from the caller's folder ($caller)
  case "$1" in /*) echo "$1" ;; *) echo "$caller/$1" ;; esac
}

resolve_config() {  # $config from the caller's folder if it is there, else from the repository root ($root)
  config_arg=$config
  if [ -f "$(absolute "$config")" ]; then config=$(absolute "$config"); else config=$root/$config; fi
}

extract_archive() {  # extract_archive ARCHIVE DEST [SHA256]: check the archive, then untar it into DEST
  # With SHA256 (a published checksum) the archive must match it; without one it must at least list
  # completely as gzip + tar (catches a truncated download). Nothing is extracted from an archive
  # that fails, and the message says which file, what was expected and what to do.
  local archive=$1 dest=$2 expected=${3:-} actual
  if [ -n "$expected" ]; then
    echo "  checking $archive (sha256)"
    actual=$(sha256sum "$archive" | cut -d' ' -f1)
    if [ "$actual" != "$expected" ]; then
      echo "run.sh: $archive: sha256 $actual, expected $expected (a corrupt or tampered download); delete it and run again, or pass --data-dir with a copy you trust" >&2
      return 1
    fi
  elif ! tar -tzf "$archive" > /dev/null 2>&1; then
    echo "run.sh: $archive: not a complete .tar.gz archive (truncated or corrupt download); delete it and run again, or pass --data-dir with a local copy" >&2
    return 1
  fi
  echo "  extracting $archive"
  tar -xzf "$archive" -C "$dest"
}

download() {  # download URL FILE HINT: fetch URL to FILE (through FILE.part) unless FILE is already there
  [ -f "$2" ] && return 0
  echo "  downloading $1"
  curl -fL --retry 3 -o "$2.part" "$1" || { echo "run.sh: download failed; $3" >&2; exit 1; }
  mv "$2.part" "$2"
}

run_stage() {  # run_stage N "title" command...: runs the command when N is within --stage/--stop-stage, says how long it took
  local number=$1 title=$2 started=$SECONDS took
  shift 2
  if [ "$stage" -le "$number" ] && [ "$stop_stage" -ge "$number" ]; then
    echo "Stage $number: $title"
    "$@"
    took=$(( SECONDS - started ))
    echo "Stage $number done in $(( took / 60 )) min $(( took % 60 )) s"
  fi
}

units_dir=""  # set once per run by resolve_units

resolve_units() {  # $units_dir: where the config's units keep vocabulary and LM: <stats>/char or <stats>/bpe<size>
  [ -z "$units_dir" ] || return 0
  local units
  units=$($python -c "import sys; from asr.config import load_config; from asr.runconfig import RunConfig
d = load_config(RunConfig, sys.argv[1]).data; print(d.units + (str(d.bpe_size) if d.units == 'bpe' else ''))" \
    "$config") || exit 1
  units_dir=${stats_dir:-$data}/$units
}

stage_stats() {  # CMVN stats, then the vocabulary (units from the config) and n-gram LM, from training transcripts only
  local stats=${stats_dir:-$data}
  resolve_units
  mkdir -p "$units_dir"
  if [ -f "$stats/.cmvn.done" ]; then
    echo "  already done ($stats/cmvn.json)"
  else
    $python -m asr cmvn --manifest "$data/$train_split.jsonl" --config "$config" --out "$stats/cmvn.json"
    touch "$stats/.cmvn.done"
  fi
  if [ -f "$units_dir/.done" ]; then
    echo "  already done ($units_dir/vocab.json, $units_dir/lm/)"
    return
  fi
  $python -m asr vocab --manifest "$data/$train_split.jsonl" --config "$config" --out "$units_dir/vocab.json"
  # a word 3-gram + lexicon for character models, a piece 6-gram for BPE models
  $python -m asr lm --manifest "$data/$train_split.jsonl" --vocab "$units_dir/vocab.json" --out-dir "$units_dir/lm"
  touch "$units_dir/.done"
}

stage_rnnlm() {  # a recurrent word LM on $rnnlm_text (stage 2, when given), early-stopped on the dev transcripts
  [ -n "${rnnlm_text:-}" ] || return 0
  resolve_units
  if [ -f "$units_dir/rnnlm/.done" ]; then
    echo "  already done ($units_dir/rnnlm/rnnlm.pt)"
    return
  fi
  case $units_dir in */char) ;; *) echo "  skipped: recurrent LMs decode character models only" >&2; return ;; esac
  local extra
  read -r -a extra <<< "${rnnlm_args:-}"
  mkdir -p "$units_dir/rnnlm"
  $python -m asr lm --type lstm --text "$rnnlm_text" --vocab "$units_dir/vocab.json" \
    --dev-manifest "$data/$dev_split.jsonl" --out-dir "$units_dir/rnnlm" --resume "${extra[@]}" \
    | tee -a "$units_dir/rnnlm/train.log"
  touch "$units_dir/rnnlm/.done"
}

stage_train() {  # asr train --resume: a killed run continues from its last checkpoint
  if [ -f "$run_dir/.train.done" ]; then
    echo "  already done ($run_dir/best.pt)"
    return
  fi
  local start launcher override_words
  resolve_units
  start=$(date +%s)
  # Split into words without pathname expansion: train.speed_perturb=[1.0,0.9] is a value, not a
  # pattern to match against file names.
  read -r -a launcher <<< "${train_launcher:-$python -m asr}"
  read -r -a override_words <<< "$overrides"
  if ! "${launcher[@]}" train --config "$config" --resume --no-progress train.out_dir="$run_dir" \
      data.train_manifest="$data/$train_split.jsonl" data.dev_manifest="$data/$dev_split.jsonl" \
      data.vocab="$units_dir/vocab.json" data.cmvn="${stats_dir:-$data}/cmvn.json" "${override_words[@]}" \
      2>&1 | tee -a "$run_dir/train.log"; then
    echo "run.sh: training failed (see $run_dir/train.log); run again to resume" >&2
    exit 1
  fi
  echo $(( $(date +%s) - start + $(cat "$run_dir/train_seconds" 2>/dev/null || echo 0) )) > "$run_dir/train_seconds"
  touch "$run_dir/.train.done"
}

stage_score() {  # tune LM weights on dev, then greedy / beam / beam + LM on every evaluation split
  if [ -f "$run_dir/.score.done" ]; then
    echo "  already done ($run_dir/RESULTS.md)"
    return
  fi
  if [ ! -f "$run_dir/best_lm.pt" ]; then
    resolve_units
    local lm_dir=${score_lm_dir:-$units_dir/lm} lexicon=() tune_words
    [ -f "$lm_dir/lexicon.txt" ] && lexicon=(--lexicon "$lm_dir/lexicon.txt")
    read -r -a tune_words <<< "${tune_args:-}"
    $python -m asr tune-lm --model "$run_dir/best.pt" --manifest "$data/$dev_split.jsonl" \
      --lm "$lm_dir/lm.arpa" "${lexicon[@]}" "${tune_words[@]}" --out "$run_dir/best_lm.pt" | tee "$run_dir/tune_lm.txt"
    if [ -f "$units_dir/rnnlm/.done" ]; then
      # add the recurrent LM, log-linear, around the n-gram's tuned weights (weight 0: the n-gram alone stays
      # in the grid, so dev WER cannot get worse)
      local tuned
      tuned=$($python -c "import sys; from asr.checkpoint import load_model
d = load_model(sys.argv[1]).decoding; b = d.word_score; print(f'{d.lm_weight:g} {b - 1:g},{b:g},{b + 1:g}')" \
        "$run_dir/best_lm.pt") || exit 1
      $python -m asr tune-lm --model "$run_dir/best.pt" --manifest "$data/$dev_split.jsonl" \
        --lm "$lm_dir/lm.arpa" "${lexicon[@]}" --rnnlm "$units_dir/rnnlm/rnnlm.pt" --rnnlm-weights 0,0.2,0.4,0.6 \
        --lm-weights="${tuned% *}" --word-scores="${tuned#* }" --out "$run_dir/best_lm.pt" | tee -a "$run_dir/tune_lm.txt"
    fi
  fi
  local split decoding model decoder name
  for split in $eval_splits; do
    for decoding in greedy beam beam_lm; do
      case $decoding in
        greedy) model=best.pt; decoder=greedy ;;
        beam) model=best.pt; decoder=beam ;;
        beam_lm) model=best_lm.pt; decoder=beam ;;
      esac
      name=${split}_${decoding}
      $python -m asr decode --model "$run_dir/$model" --decoder $decoder --manifest "$data/$split.jsonl" \
        --out "$run_dir/hyp_$name.jsonl" --stats "$run_dir/decode_$name.json"
      $python -m asr score --ref "$data/$split.jsonl" --hyp "$run_dir/hyp_$name.jsonl" \
        --json "$run_dir/score_$name.json" --report "$run_dir/report_$name.txt" > "$run_dir/score_$name.txt"
      echo "  $name: $(head -n 1 "$run_dir/score_$name.txt")"
    done
  done
  # shellcheck disable=SC2086  # eval_splits is a list
  $python "$(dirname "${BASH_SOURCE[0]}")/write_results.py" --run-dir "$run_dir" --config "$config_arg" \
    --splits $eval_splits --command "$recipe_command" --note "${results_note:-}" \
    ${lm_description:+--lm-description "$lm_description"}
  cat "$run_dir/RESULTS.md"
  touch "$run_dir/.score.done"
}
