#!/usr/bin/env bash
# Builds the shipped meta-database in the background, resumably: rerun this script after a kill or
# in a later session and it continues where it stopped (rows are keyed; teachers resume per epoch).
#   nohup setsid metadb/build.sh > metadb/build.out 2>&1 &
# WORKERS=2 uses both cores when the machine is free; DEVICE=cuda trains on a GPU (all workers share it).
# PHASES picks phases (default "1 2 3 4"); TASKS_OK and PHASE4_TASKS, if set, limit phases 3 and 4 to
# the tasks they list.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$(command -v dass-edge || echo .venv/bin/dass-edge)}
WORKERS=${WORKERS:-1}
DEVICE=${DEVICE:-cpu}
PHASES=${PHASES:-1 2 3 4}
COMMON=(--out dass_edge/assets/metadb.jsonl --teachers metadb/teachers --log metadb/build.log
        --resolution 16 --epochs 10 --lr 0.01 --teacher-epochs 100 --students-per-task 40
        --workers "$WORKERS" --threads 1 --train-device "$DEVICE")
META_TRAIN=glyph-latin-upper,glyph-latin-lower:resnet_edge_m,glyph-greek-upper:resnet_edge_m,glyph-cyrillic-upper,glyph-cyrillic-lower,glyph-armenian,glyph-georgian,glyph-math:resnet_edge_m,textures
SPARE=${TASKS_OK:-glyph-digits,count-dots:resnet_edge_m,glyph-arrows}
PHASE4_TASKS=${PHASE4_TASKS:-$META_TRAIN,$SPARE}

for phase in $PHASES; do
  echo "phase $phase started $(date -Is)"
  case $phase in
    # Phase 1 - label quality: the held-out tasks, 2 seeds for 20 students each (seed_spearman).
    1) "$PY" meta build-db "${COMMON[@]}" \
         --tasks glyph-hebrew,shapes:resnet_edge_m,glyph-greek-lower \
         --heldout glyph-hebrew,shapes,glyph-greek-lower --seeds 0,1 --multi-seed-students 20 ;;
    # Phase 2 - meta-training tasks, one seed; two teacher shapes across tasks.
    2) "$PY" meta build-db "${COMMON[@]}" --tasks "$META_TRAIN" --seeds 0 ;;
    # Phase 3 - more meta-training tasks (more datasets and teachers for the predictor to generalize from).
    3) [ -n "$SPARE" ] && "$PY" meta build-db "${COMMON[@]}" --tasks "$SPARE" --seeds 0 ;;
    # Phase 4 - 40 more students per meta-training task (a second seeded sample of the space).
    4) "$PY" meta build-db "${COMMON[@]}" --tasks "$PHASE4_TASKS" --seeds 0 --sample-seed 1 ;;
  esac
done
echo "build finished $(date -Is)"
