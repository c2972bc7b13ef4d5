#!/usr/bin/env bash
# Builds the shipped meta-database in the background, resumably: rerun this script after a kill or
# in a later session and it continues where it stopped (rows are keyed; teachers resume per epoch).
#   nohup setsid metadb/build.sh > metadb/build.out 2>&1 &
# WORKERS=2 uses both cores when the machine is free.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$(command -v dass-edge || echo .venv/bin/dass-edge)}
WORKERS=${WORKERS:-1}
COMMON=(--out dass_edge/assets/metadb.jsonl --teachers metadb/teachers --log metadb/build.log
        --resolution 16 --epochs 10 --lr 0.01 --teacher-epochs 100 --students-per-task 40
        --workers "$WORKERS" --threads 1)

# Phase 1 - label quality: the held-out tasks, 2 seeds for 20 students each (seed_spearman).
"$PY" meta build-db "${COMMON[@]}" \
  --tasks glyph-hebrew,shapes:resnet_edge_m,glyph-greek-lower \
  --heldout glyph-hebrew,shapes,glyph-greek-lower --seeds 0,1 --multi-seed-students 20

# Phase 2 - meta-training tasks, one seed; two teacher shapes across tasks.
"$PY" meta build-db "${COMMON[@]}" \
  --tasks glyph-latin-upper,glyph-latin-lower:resnet_edge_m,glyph-greek-upper:resnet_edge_m,glyph-cyrillic-upper,glyph-cyrillic-lower,glyph-armenian,glyph-georgian,glyph-math:resnet_edge_m,textures \
  --seeds 0
echo "build finished $(date -Is)"
