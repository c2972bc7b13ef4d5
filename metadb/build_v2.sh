#!/usr/bin/env bash
# Meta-database v2 (issues 12 and 19), in the background and resumably: rerun after a kill or in a later
# session and it continues (frozen tasks and teachers are kept; rows are keyed).
#   nohup setsid metadb/build_v2.sh > metadb/build_v2.out 2>&1 &
# On a CPU, LANES=2 runs two pairs side by side, each pair's teacher then its rows (1 worker each), so rows
# arrive while other teachers still train. DEVICE=cuda WORKERS=14 on a GPU machine (LANES=1: each phase's
# pairs at once, teachers in parallel, then rows).
# Rows go to metadb/metadb_v2.jsonl until predictor v2 is trained on v1 + v2.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$(command -v dass-edge || echo .venv/bin/dass-edge)}
read -ra PY <<< "$PY"  # PY may be a command with arguments, e.g. PY="python -m dass_edge.cli"
WORKERS=${WORKERS:-1}
LANES=${LANES:-1}
DEVICE=${DEVICE:-cpu}
PHASES=${PHASES:-0 1 2 3 4 5 6 7 8 9 10}
# Band sampling: 8 bands of near-equal FLOPs (+-5%), 8 students each, shapes as different as the band allows.
COMMON=(--out metadb/metadb_v2.jsonl --teachers metadb/teachers --log metadb/build_v2.log
        --sampling bands --bands 8 --per-band 8 --band-tol 0.05
        --epochs 10 --lr 0.01 --teacher-epochs 40
        --workers "$WORKERS" --threads 1 --train-device "$DEVICE")
# Held out: 2 real-image families, deeper teachers (3-3-3-3, ResNet-34's 3-4-6-3) and two 64 px ImageNet-stem
# teachers (ResNet-18 and -34 shapes). The small-stem held-out pairs come first, then the meta-training pairs (the predictor cannot be rebuilt on v2
# without them), then the ImageNet-stem held-out pairs.
HELDOUT_16=emoji-faces:resnet_edge_d3@16,photo-crops:resnet34_edge@16
HELDOUT_64=emoji-animals:resnet18_in64@64,emoji-objects:resnet34_in64@64
HELDOUT=$HELDOUT_16,$HELDOUT_64
META_TRAIN=emoji-food:resnet18_in64@64,emoji-transport:resnet34_in64@64,emoji-people:resnet_edge_d3@16,emoji-activities:resnet34_edge@16
# Phase 4 (session 9): two more band-sampled meta-training pairs, a wider teacher and a third ImageNet-stem
# one: 4 emoji pairs were too few for the shared weights to learn the emoji order inside equal-cost bands.
META_TRAIN_2=emoji-snacks:resnet_edge_m@16,emoji-assorted:resnet18_in64@64
# Phase 5 (session 10): two more, a ResNet-34-shaped teacher of each stem (the shape users bring).
META_TRAIN_3=emoji-sports:resnet34_edge@16,emoji-symbols:resnet34_in64@64
# Phase 6 (session 15): two glyph pairs the v1 build left out (their images rendered differently on another
# machine; frozen now, so every machine trains on the same pixels), a wider and a ResNet-34-shaped small-stem teacher.
META_TRAIN_4=glyph-digits:resnet_edge_m@16,glyph-arrows:resnet34_edge@16
# Phase 7 (session 16): two glyph families unlike letters (Braille cells; syllabics told apart by orientation),
# one with an ImageNet-stem teacher: until now every ImageNet-stem meta-training teacher was on emoji, so the stem
# descriptor could not be told from the emoji domain.
META_TRAIN_5=glyph-braille:resnet18_in64@64,glyph-syllabics:resnet_edge_d3@16
# Phase 8 (session 17): two more non-emoji pairs with ImageNet-stem teachers, so that stem and emoji domain part
# ways on three tasks, not one. Both teachers have the ResNet-18 shape: the ResNet-34 one stayed at chance on glyphs
# (chess pieces: 11% after 40 epochs, chance 8%; Arabic: 3.9% after 5, chance 3.6%).
META_TRAIN_6=glyph-arabic:resnet18_in64@64,glyph-tifinagh:resnet18_in64@64
# Phase 9 (session 18): two more ImageNet-stem pairs off emoji (N'Ko letters, Lao consonants), for set 11.
META_TRAIN_7=glyph-nko:resnet18_in64@64,glyph-lao:resnet18_in64@64
# Phase 10 (session 19): Lisu letters and monochrome symbols, ImageNet-stem teachers, for set 12.
META_TRAIN_8=glyph-lisu:resnet18_in64@64,glyph-misc-symbols:resnet18_in64@64
names() { echo "$1" | sed -E 's/:[^,]*//g'; }

# LANES=1: one build-db per phase over all its pairs (WORKERS processes share the machine, e.g. 14 on a GPU).
# LANES>1 (a CPU): the phases' pairs form one queue in phase order and each lane takes the next pair not yet
# taken, one build-db (1 worker) each, with no barrier between phases, so a lane that finishes early goes on to
# the next phase's pairs. Rows are appended under a file lock, so lanes share the DB.
heldout_args() { [ "$1" = 1 ] && echo "--heldout $(names "$2")"; }

for phase in $PHASES; do
  if [ "$phase" = 0 ]; then  # freeze the task images once (uint8 .npz + SHA256SUMS in metadb/tasks)
    echo "phase 0 started $(date -Is)"
    "${PY[@]}" meta freeze "$(names "$HELDOUT"),$(names "$META_TRAIN"),$(names "$META_TRAIN_2"),$(names "$META_TRAIN_3"),$(names "$META_TRAIN_4"),$(names "$META_TRAIN_5"),$(names "$META_TRAIN_6"),$(names "$META_TRAIN_7"),$(names "$META_TRAIN_8")" \
      --dir metadb/tasks
  fi
done
# Phases 1 and 3 - held-out pairs (small stem, then ImageNet stem), every student with 2 seeds (within-band label
# quality); phases 2 and 4-10 - meta-training pairs, one seed. Each entry: "PAIRS SEEDS HELD".
queue=()
for phase in $PHASES; do
  case $phase in
    1) queue+=("$HELDOUT_16 0,1 1") ;;
    2) queue+=("$META_TRAIN 0 0") ;;
    3) queue+=("$HELDOUT_64 0,1 1") ;;
    4) queue+=("$META_TRAIN_2 0 0") ;;
    5) queue+=("$META_TRAIN_3 0 0") ;;
    6) queue+=("$META_TRAIN_4 0 0") ;;
    7) queue+=("$META_TRAIN_5 0 0") ;;
    8) queue+=("$META_TRAIN_6 0 0") ;;
    9) queue+=("$META_TRAIN_7 0 0") ;;
    10) queue+=("$META_TRAIN_8 0 0") ;;
  esac
done
if [ "$LANES" -le 1 ]; then
  for entry in "${queue[@]}"; do
    read -r pairs seeds held <<< "$entry"
    echo "pairs $pairs started $(date -Is)"
    # shellcheck disable=SC2046
    "${PY[@]}" meta build-db "${COMMON[@]}" --tasks "$pairs" $(heldout_args "$held" "$pairs") --seeds "$seeds"
  done
else
  work=()
  for entry in "${queue[@]}"; do
    read -r pairs seeds held <<< "$entry"
    IFS=, read -ra list <<< "$pairs"
    for p in "${list[@]}"; do work+=("$p $seeds $held"); done
  done
  # Lanes pull the next pair from a shared counter (flock), so a lane that finishes early takes whatever is
  # left instead of idling while another lane still has a long queue (pairs differ by hours).
  counter=$(mktemp); echo 0 > "$counter"
  pids=()
  for ((lane = 0; lane < LANES; lane++)); do
    (while :; do
       i=$(flock "$counter.lock" bash -c 'i=$(cat "$1"); echo $((i + 1)) > "$1"; echo "$i"' _ "$counter")
       [ "$i" -lt "${#work[@]}" ] || break
       read -r p seeds held <<< "${work[$i]}"
       echo "lane $lane: $p started $(date -Is)"
       # shellcheck disable=SC2046
       "${PY[@]}" meta build-db "${COMMON[@]}" --tasks "$p" $(heldout_args "$held" "$p") --seeds "$seeds" --workers 1
     done) &
    pids+=($!)
  done
  rc=0; for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
  rm -f "$counter" "$counter.lock"
  [ "$rc" = 0 ] || exit 1
fi
echo "build finished $(date -Is)"
