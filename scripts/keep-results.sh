#!/usr/bin/env bash
# Copy the small, lasting part of campaign runs into the repository (results/runs/): every run's
# config.json, result.json and metrics.jsonl, and best.pt of the exact and quantized stages (the
# starting points of further approximate runs). Tables: axcnn campaign table PLAN --runs-dir results/runs
# usage: scripts/keep-results.sh [RUNS_DIR=runs] [DEST=results/runs] MODEL-DATASET...
set -euo pipefail
src=${RUNS_DIR:-runs}; dest=${DEST:-results/runs}
[ $# -gt 0 ] || { echo "usage: $0 MODEL-DATASET... (e.g. resnet20-cifar10)" >&2; exit 2; }
for md in "$@"; do
  [ -d "$src/$md" ] || { echo "no runs for '$md' under $src" >&2; exit 2; }
  for run in "$src/$md"/*/; do
    name=$(basename "$run")
    [ -f "$run/result.json" ] || continue          # unfinished runs stay behind
    mkdir -p "$dest/$md/$name"
    cp "$run"/config.json "$run"/result.json "$run"/metrics.jsonl "$dest/$md/$name/"
    case "$name" in exact|quantized-*) cp "$run/best.pt" "$dest/$md/$name/" ;; esac
  done
done
echo "kept $(find "$dest" -name result.json | wc -l) finished runs under $dest"
