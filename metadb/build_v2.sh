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
# Band sampling: 8 bands of near-equal FLOPs (+-5%), 8 students each, shapes as different as the band allows.
COMMON=(--out metadb/metadb_v2.jsonl --teachers metadb/teachers --log metadb/build_v2.log
        --sampling bands --bands 8 --per-band 8 --band-tol 0.05
        --epochs 10 --lr 0.01 --teacher-epochs 40
        --workers "$WORKERS" --threads 1 --train-device "$DEVICE")
# Every phase's pairs, in one table read by both the phase-0 freeze and the build queue, so a new phase is one
# entry here. Each entry: "PAIRS SEEDS HELD". Held-out phases (1, 3 and 13) train every
# student with 2 seeds (within-band label quality); meta-training phases one seed.
phase_entry() {
  case $1 in
    # Held out: 2 real-image families, deeper teachers (3-3-3-3, ResNet-34's 3-4-6-3), small stem first ...
    1) echo "emoji-faces:resnet_edge_d3@16,photo-crops:resnet34_edge@16 0,1 1" ;;
    # ... then the meta-training pairs (the predictor cannot be rebuilt on v2 without them) ...
    2) echo "emoji-food:resnet18_in64@64,emoji-transport:resnet34_in64@64,emoji-people:resnet_edge_d3@16,emoji-activities:resnet34_edge@16 0 0" ;;
    # ... then two 64 px ImageNet-stem held-out teachers (ResNet-18 and -34 shapes).
    3) echo "emoji-animals:resnet18_in64@64,emoji-objects:resnet34_in64@64 0,1 1" ;;
    # Phase 4 (session 9): a wider teacher and a third ImageNet-stem one: 4 emoji pairs were too few for the
    # shared weights to learn the emoji order inside equal-cost bands.
    4) echo "emoji-snacks:resnet_edge_m@16,emoji-assorted:resnet18_in64@64 0 0" ;;
    # Phase 5 (session 10): a ResNet-34-shaped teacher of each stem (the shape users bring).
    5) echo "emoji-sports:resnet34_edge@16,emoji-symbols:resnet34_in64@64 0 0" ;;
    # Phase 6 (session 15): two glyph pairs the v1 build left out (their images rendered differently on another
    # machine; frozen now, so every machine trains on the same pixels).
    6) echo "glyph-digits:resnet_edge_m@16,glyph-arrows:resnet34_edge@16 0 0" ;;
    # Phase 7 (session 16): glyph families unlike letters (Braille cells; syllabics told apart by orientation), one
    # with an ImageNet-stem teacher, so the stem descriptor can be told from the emoji domain.
    7) echo "glyph-braille:resnet18_in64@64,glyph-syllabics:resnet_edge_d3@16 0 0" ;;
    # Phase 8 (session 17): more ImageNet-stem teachers off emoji. ResNet-18 shape: the ResNet-34 one stayed at
    # chance on glyphs (chess pieces: 11% after 40 epochs, chance 8%; Arabic: 3.9% after 5, chance 3.6%).
    8) echo "glyph-arabic:resnet18_in64@64,glyph-tifinagh:resnet18_in64@64 0 0" ;;
    # Phase 9 (session 18): N'Ko letters, Lao consonants, for set 11.
    9) echo "glyph-nko:resnet18_in64@64,glyph-lao:resnet18_in64@64 0 0" ;;
    # Phase 10 (session 19): Lisu letters and monochrome symbols, for set 12.
    10) echo "glyph-lisu:resnet18_in64@64,glyph-misc-symbols:resnet18_in64@64 0 0" ;;
    # Phase 11 (session 20): the first meta-training pairs at 32 px (the demo's resolution), small-stem teachers:
    # the demo teacher's shape and ResNet-34's depths. For set 13.
    11) echo "glyph-ipa:resnet_edge_s@32,glyph-currency:resnet34_edge@32 0 0" ;;
    # Phase 12 (session 21): two more 32 px pairs, the small-stem teacher shapes not yet seen at 32 px. For set 14.
    12) echo "glyph-ogham:resnet_edge_m@32,glyph-dingbats:resnet_edge_d3@32 0 0" ;;
    # Phase 13 (session 23): the first held-out pairs at 32 px, the demo teacher's shape and ResNet-34's depths, on
    # two glyph families no meta-training task uses; 2 seeds per student like phases 1 and 3.
    13) echo "glyph-technical:resnet_edge_s@32,glyph-letterlike:resnet34_edge@32 0,1 1" ;;
    # Phase 14 (session 24): two more 32 px meta-training pairs (domino tiles, number forms), for set 15 and a second
    # look at candidate M2 (benchmarks/results/predictor_refit_rule.txt).
    14) echo "glyph-domino:resnet34_edge@32,glyph-number-forms:resnet_edge_s@32 0 0" ;;
    # Phase 15 (session 24): two colour-emoji meta-training pairs at 32 px (weather/sky/plants; Unicode 13-15 objects),
    # for set 16 and a look at the colour descriptor (benchmarks/results/predictor_refit_rule.txt).
    15) echo "emoji-nature:resnet_edge_s@32,emoji-gadgets:resnet34_edge@32 0 0" ;;
    # Phase 16 (session 25): the first natural photographs in meta-training (two more desktop-background packages),
    # for set 17 (benchmarks/results/predictor_refit_rule.txt).
    16) echo "photo-plasma:resnet_edge_s@32,photo-lomiri:resnet34_edge@32 0 0" ;;
    *) echo "build_v2.sh: no phase $1" >&2; return 1 ;;
  esac
}
ALL_PHASES=$(p=1; while phase_entry "$p" > /dev/null 2>&1; do echo -n "$p "; p=$((p + 1)); done)
PHASES=${PHASES:-0 $ALL_PHASES}  # 0 freezes the task images
names() { echo "$1" | sed -E 's/:[^,]*//g'; }

# LANES=1: one build-db per phase over all its pairs (WORKERS processes share the machine, e.g. 14 on a GPU).
# LANES>1 (a CPU): the phases' pairs form one queue in phase order and each lane takes the next pair not yet
# taken, one build-db (1 worker) each, with no barrier between phases, so a lane that finishes early goes on to
# the next phase's pairs. Rows are appended under a file lock, so lanes share the DB.
heldout_args() { [ "$1" = 1 ] && echo "--heldout $(names "$2")"; }

queue=()
for phase in $PHASES; do
  if [ "$phase" = 0 ]; then  # freeze every phase's task images once (uint8 .npz + SHA256SUMS in metadb/tasks)
    echo "phase 0 started $(date -Is)"
    all=()
    for p in $ALL_PHASES; do read -r pairs _ <<< "$(phase_entry "$p")"; all+=("$(names "$pairs")"); done
    "${PY[@]}" meta freeze "$(IFS=,; echo "${all[*]}")" --dir metadb/tasks
  else
    queue+=("$(phase_entry "$phase")")
  fi
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
