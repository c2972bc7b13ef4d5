#!/usr/bin/env bash
# One GPU session (issue 15, item 4): the `gpu` profile's full table, torch CUDA, a few-shot transfer from
# the CPU table scored against it, and a TensorRT attempt. Run from the repository root on the GPU machine:
#
#     OUT=/path/to/results bash benchmarks/gpu_session.sh        # the device runner sets $OUT itself
#
# Steps run in priority order within DEADLINE_S (default 560 s; the device runner allows 600 s per command):
# the ONNX Runtime CUDA table first, then the few-shot transfer scored against it, then torch CUDA, then
# TensorRT, then (time left) meta-database v2 phases 14, 15 and 13. A step cut short by its timeout says so
# (rc=124) and the next one starts.
# Everything it produces (tables, logs, a summary) goes under $OUT (the database rows are also appended in this copy
# of the checkout, then copied there), so a table worth shipping is copied into latency_tables/ by hand afterwards,
# with its log.
# UNTESTED ON A GPU: written in a session without a GPU machine. Each step logs and carries on when it fails,
# so one run says what worked; $OUT/summary.txt lists every step's exit code.
set -uo pipefail

OUT="${OUT:?set OUT to a folder for the results}"
mkdir -p "$OUT"
export DASS_EDGE_TABLES="$OUT/tables" DASS_EDGE_PROFILES="$OUT/profiles" DASS_EDGE_CACHE="$OUT/cache"
mkdir -p "$DASS_EDGE_PROFILES"
PY="${PYTHON:-python3}"
RES="${RES:-32}"                                  # the shipped CPU table is the demo teacher at 32 px
SRC="$(ls latency_tables/cpu_*_r${RES}.json | head -n 1)"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"

DEADLINE_S="${DEADLINE_S:-560}"                  # the device runner allows 600 s per command
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout, without installing it

step() {  # step NAME TIMEOUT_S COMMAND...: run, log to $OUT/NAME.log, record the exit code
    local name="$1" limit="$2"; shift 2
    local t0=$SECONDS left=$((DEADLINE_S - SECONDS))
    if [ "$left" -lt 15 ]; then echo "$name skipped: no time left" | tee -a "$SUMMARY"; return 124; fi
    [ "$limit" -gt "$left" ] && limit=$left
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "$name rc=$rc $((SECONDS - t0))s" | tee -a "$SUMMARY"
    return $rc
}

# 0. What is here: GPU, drivers, Python packages, onnxruntime providers.
step env 60 bash -c "nvidia-smi; $PY -c 'import sys, torch, onnxruntime as ort; print(sys.version); \
print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, torch.cuda.is_available()); \
print(\"onnxruntime\", ort.__version__, ort.get_available_providers())'; $PY -m pip list 2>/dev/null | \
grep -i -E 'torch|onnx|tensorrt|cuda'"
if ! "$PY" -c 'import sys, onnxruntime as o; sys.exit("CUDAExecutionProvider" not in o.get_available_providers())'; then
    step install_ort_gpu 60 "$PY" -m pip install -q --retries 0 --timeout 10 onnxruntime-gpu   # the CUDA EP lives in onnxruntime-gpu
fi

# 1. The gpu profile's full table: onnxruntime CUDA EP, FP16 graphs (profiles/gpu.yaml).
step gpu_ort_fp16_full 200 "$PY" -m dass_edge.cli profile --device gpu --resolution "$RES" --json \
    --out "$OUT/gpu_ort_fp16_full.json"

# 2. Few-shot transfer from the shipped CPU table to the gpu profile (20 students, 30 held out), then
#    scored against the full table's own 30 random students (measured in step 1).
step gpu_fewshot20 100 "$PY" -m dass_edge.cli profile --device gpu --resolution "$RES" --few-shot 20 \
    --from "$SRC" --students 30 --json --out "$OUT/gpu_fewshot20.json"
step fewshot_vs_full 30 "$PY" - "$OUT/gpu_fewshot20.json" "$OUT/gpu_ort_fp16_full.json" <<'PYEOF'
import json, sys
from dass_edge.latency import LatencyTable
from dass_edge.latency.stats import fidelity_metrics
from dass_edge.space import Arch, SearchSpace
few, full = LatencyTable.load(sys.argv[1]), LatencyTable.load(sys.argv[2])
space = SearchSpace(full.teacher, fixed_last_stage=full.data["space"]["fixed_last_stage"])
fitted = {json.dumps(s["arch"], sort_keys=True) for s in few.data["transferred"]["fit_samples"]}
held = [s for s in full.fidelity["samples"] if json.dumps(s["arch"], sort_keys=True) not in fitted]
specs = [space.to_spec(Arch.from_dict(s["arch"])) for s in held]
measured = [s["p50_ms"] for s in held]
out = {"students": len(held),
       "fewshot_vs_full_students": fidelity_metrics([few.predict(x)["p50_ms"] for x in specs], measured),
       "full_table_loo": {k: full.fidelity.get(k) for k in ("within_10pct", "rmspe", "spearman")},
       "fewshot_own_heldout": {k: few.fidelity.get(k) for k in ("students", "within_10pct", "rmspe", "spearman")},
       "fewshot_elapsed_s": few.provenance["elapsed_s"], "full_elapsed_s": full.provenance["elapsed_s"]}
print(json.dumps(out, indent=1))
PYEOF

# 3. torch CUDA, FP16 (a profile written here: the registry's torch backend with device cuda).
cat > "$DASS_EDGE_PROFILES/gpu-torch.yaml" <<'YAML'
name: gpu-torch
description: A CUDA GPU through PyTorch (torch.export programs), FP16, batch 1
backend: torch
device: cuda
precision: fp16
batch: 1
threads: 1
resolutions: [32, 64, 96, 128, 160, 224]
measurement: {warmup_s: 0.1, iterations: 100, sessions: 3, fidelity_students: 30, fidelity_sessions: 9}
clocks: {gpu_clocks: recorded}
YAML
step gpu_torch_fp16_full 120 "$PY" -m dass_edge.cli profile --device gpu-torch --resolution "$RES" --json \
    --out "$OUT/gpu_torch_fp16_full.json"

# 4. TensorRT: try to install it (the machine may have no network: the log says so), then measure the
#    TensorRT path and build an engine of the demo pick (search -> 1-epoch distill -> export).
if [ "${TRY_TRT:-1}" = 1 ]; then step install_tensorrt 45 "$PY" -m pip install -q --retries 0 --timeout 10 tensorrt; fi
if "$PY" -c 'import tensorrt' 2>/dev/null; then
    cat > "$DASS_EDGE_PROFILES/gpu-tensorrt.yaml" <<'YAML'
name: gpu-tensorrt
description: A CUDA GPU through TensorRT engines built here, FP16, batch 1
backend: tensorrt
precision: fp16
batch: 1
threads: 1
resolutions: [32, 64, 96, 128, 160, 224]
workspace_mb: 1024
measurement: {warmup_s: 0.1, iterations: 100, sessions: 3, fidelity_students: 30, fidelity_sessions: 9}
clocks: {gpu_clocks: recorded}
YAML
    step gpu_tensorrt_fp16_full 120 "$PY" -m dass_edge.cli profile --device gpu-tensorrt --resolution "$RES" \
        --json --out "$OUT/gpu_tensorrt_fp16_full.json"
    step demo_search 40 "$PY" -m dass_edge.cli search --latency-ms 0.35 --out "$OUT/runs/demo"
    step demo_distill 60 "$PY" -m dass_edge.cli distill "$OUT/runs/demo" --rank 1 --epochs 1
    step demo_export_trt 60 "$PY" -m dass_edge.cli export "$OUT/runs/demo" --format tensorrt \
        --device gpu-tensorrt --json --out "$OUT/demo_export"
    find "$OUT/demo_export" -name '*.engine' -size +50M -delete 2>/dev/null  # keep what comes back small
else
    echo "tensorrt not importable: TensorRT steps skipped" | tee -a "$SUMMARY"
fi
# 5. With what time is left: meta-database v2 phase 14 (session 24 rule: the meta-training glyph-domino and
#    glyph-number-forms at 32 px), phase 15 (the meta-training emoji-nature and emoji-gadgets at 32 px), phase 16
#    (session 25 rule: the meta-training photo-plasma and photo-lomiri at 32 px), then phase 13 (session 23 rule: the
#    held-out glyph-technical and glyph-letterlike at 32 px, 2 seeds per student) on the GPU, 14 processes (teachers
#    first if the CPU has not trained them yet).
#    Rows are appended one by one under a lock, so a step cut short still returns what it trained; copy
#    $OUT/metadb_v2.jsonl over metadb/metadb_v2.jsonl afterwards (it holds every earlier row too), and
#    $OUT/teachers/* into metadb/teachers/, then finish on a CPU with `PHASES="14 15 16 13" LANES=1 WORKERS=2
#    metadb/build_v2.sh`.
touch "$OUT/.metadb_start"  # the teachers this step trains are the ones newer than this
step metadb_phases14_15_16_13 600 env PHASES="14 15 16 13" LANES=1 DEVICE=cuda WORKERS=14 PY="$PY -m dass_edge.cli" \
    bash metadb/build_v2.sh
pkill -f "dass_edge.cli meta build-db" && sleep 3  # timeout stops the script, not its build-db: stop it before copying
cp metadb/metadb_v2.jsonl metadb/build_v2.log "$OUT/"
mkdir -p "$OUT/teachers" && find metadb/teachers -name '*.safetensors' -newer "$OUT/.metadb_start" \
    -exec cp {} "$OUT/teachers/" \;
rm -rf "$OUT/cache" "$OUT/tables/.work" "$OUT/.metadb_start"
echo "done; tables and logs in $OUT" | tee -a "$SUMMARY"
