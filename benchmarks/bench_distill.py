"""Distillation and meta-database benchmarks → benchmarks/results/distill.md.

1. KD step throughput of one student: plain cross-entropy vs KD with the teacher-output cache vs KD
   running the teacher live (same student, data, recipe; runs interleaved A B C A B C, 1 thread).
2. Meta-DB engines: the same KD jobs on the local pool with 1 worker vs Ray with 2 workers
   (speed-up), and Ray with 1 worker vs local with 1 (overhead).
3. Label quality of the database built so far (``dass-edge meta info``): seed Spearman, seed gap
   vs accuracy spread, per task.

Ratios are measured side by side in one run; absolute times on this shared 2-core machine are noisy.

    python benchmarks/bench_distill.py [--teacher metadb/teachers/glyph-hebrew.safetensors]
           [--task glyph-hebrew] [--db dass_edge/assets/metadb.jsonl] [--skip ray]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import cpu_model  # noqa: E402
from dass_edge.data import load_task
from dass_edge.io import file_sha256
from dass_edge.metadb import db_info, read_rows
from dass_edge.metadb.builder import BuildPlan, TaskPlan, build_db
from dass_edge.metadb.engines import LocalEngine, RayEngine
from dass_edge.metadb.sampling import sample_students
from dass_edge.models import load_checkpoint
from dass_edge.space import SearchSpace
from dass_edge.training.distill import DB_RECIPE, KDConfig, distill

ROOT = Path(__file__).resolve().parent.parent


def _rel(p: Path) -> str:
    p = p.resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)



def throughput(teacher_path: Path, task: str, epochs: int, repeats: int) -> dict:
    torch.set_num_threads(1)
    teacher, _ = load_checkpoint(teacher_path)
    sha = file_sha256(teacher_path)
    data = load_task(task, resolution=teacher.spec.resolution)
    space = SearchSpace(teacher.spec)
    arch = sample_students(space, 9, seed=1)[4]  # a middle-sized student
    recipe = DB_RECIPE.__class__(**{**DB_RECIPE.__dict__, "epochs": epochs})
    cache_dir = Path(tempfile.mkdtemp(prefix="bench-distill-"))
    t0 = time.perf_counter()
    distill(teacher, arch, data, KDConfig(recipe=recipe), teacher_sha256=sha, cache_dir=cache_dir)  # builds cache
    first_run = time.perf_counter() - t0
    modes = {"ce": (KDConfig(recipe=recipe, loss="ce"), None),
             "kd_cached": (KDConfig(recipe=recipe), cache_dir),
             "kd_live": (KDConfig(recipe=recipe), None)}
    ips: dict[str, list[float]] = {k: [] for k in modes}
    for _ in range(repeats):
        for name, (config, cdir) in modes.items():
            r = distill(teacher, arch, data, config, teacher_sha256=sha, cache_dir=cdir)
            ips[name].append(r.images_per_second)
    med = {k: statistics.median(v) for k, v in ips.items()}
    return {"task": task, "teacher": _rel(teacher_path), "arch": arch.key(), "params": space.params(arch),
            "train_images": len(data.train), "epochs": epochs, "repeats": repeats, "img_s": med, "all": ips,
            "first_run_with_cache_build_s": round(first_run, 1),
            "cached_over_ce": med["kd_cached"] / med["ce"], "cached_over_live": med["kd_cached"] / med["kd_live"],
            "live_over_ce": med["kd_live"] / med["ce"]}


def engines(teacher_path: Path, task: str, jobs: int, epochs: int) -> dict:
    teacher, _ = load_checkpoint(teacher_path)
    tmp = Path(tempfile.mkdtemp(prefix="bench-engines-"))
    teachers = tmp / "teachers"
    teachers.mkdir()
    (teachers / f"{task}.safetensors").write_bytes(teacher_path.read_bytes())

    def plan() -> BuildPlan:
        return BuildPlan(tasks=[TaskPlan(task, "resnet_edge_s", False, jobs, (0,))], teachers_dir=teachers,
                         resolution=teacher.spec.resolution, cache_dir=tmp / "cache",
                         config=KDConfig(recipe=DB_RECIPE.__class__(**{**DB_RECIPE.__dict__, "epochs": epochs})))

    # Warm the teacher-output cache once so every configuration measures KD runs only.
    build_db(BuildPlan(**{**plan().__dict__, "tasks": [TaskPlan(task, "resnet_edge_s", False, 1, (0,))]}),
             tmp / "warm.jsonl", LocalEngine(0))
    out = {}
    for name, make in [("local-1", lambda: LocalEngine(1)), ("ray-2", lambda: RayEngine(workers=2)),
                       ("ray-1", lambda: RayEngine(workers=1))]:
        t0 = time.perf_counter()
        with make() as eng:
            t_ready = time.perf_counter() - t0
            build_db(plan(), tmp / f"{name}.jsonl", eng)
        rows = read_rows(tmp / f"{name}.jsonl")
        out[name] = {"wall_s": round(time.perf_counter() - t0, 1), "startup_s": round(t_ready, 1),
                     "job_s_sum": round(sum(r["seconds"] for r in rows), 1), "rows": len(rows)}
    out["speedup_ray2_over_local1"] = out["local-1"]["wall_s"] / out["ray-2"]["wall_s"]
    out["overhead_ray1_minus_local1_s"] = out["ray-1"]["wall_s"] - out["local-1"]["wall_s"]
    out["jobs"], out["epochs"] = jobs, epochs
    return out


def write_report(path: Path, cmd: str, tp: dict | None, eng: dict | None, info: dict | None) -> None:
    lines = ["# Distillation and meta-database benchmarks", "",
             f"- command: `{cmd}`", f"- machine: {platform.machine()}, {os.cpu_count()} cores, "
             f"{cpu_model()}, torch {torch.__version__}, Python {platform.python_version()}; "
             "shared with other jobs (load average ~4-9 during the run: absolute times are noisy, ratios less so)",
             f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}", ""]
    if tp:
        lines += ["## KD step throughput (teacher-output cache)", "",
                  f"Student `{tp['arch']}` ({tp['params'] / 1e6:.2f}M params) of `{tp['teacher']}` on {tp['task']} "
                  f"({tp['train_images']} train images), {tp['epochs']} epochs per run, 1 thread, median of "
                  f"{tp['repeats']} interleaved runs (training images per second, evaluation excluded). "
                  f"Measured {tp.get('date', '')} by `{tp.get('command', '')}`.", "",
                  "| mode | img/s | ratio to plain CE |", "|---|---|---|"]
        for k, label in [("ce", "plain cross-entropy"), ("kd_cached", "KD, cached teacher"),
                         ("kd_live", "KD, teacher run live")]:
            lines.append(f"| {label} | {tp['img_s'][k]:.0f} | {tp['img_s'][k] / tp['img_s']['ce']:.2f}x |")
        lines += ["", f"- KD with cache / plain CE: **{tp['cached_over_ce']:.2f}x** (target >= 0.8x)",
                  f"- KD with cache / KD live: **{tp['cached_over_live']:.2f}x**",
                  f"- first run (builds the cache): {tp['first_run_with_cache_build_s']} s", ""]
    if eng:
        lines += ["## Meta-DB engines: local pool vs Ray", "",
                  f"{eng['jobs']} KD jobs ({eng['epochs']} epochs each), 1 torch thread per job, teacher cache warm. "
                  f"Measured {eng.get('date', '')} by `{eng.get('command', '')}`.",
                  "", "| engine | wall s | startup s | sum of job s | job s / wall s (parallelism) | "
                  "other overhead s |", "|---|---|---|---|---|---|"]
        for k in ("local-1", "ray-2", "ray-1"):
            e = eng[k]
            workers = int(k.split("-")[1])
            other = e["wall_s"] - e["startup_s"] - e["job_s_sum"] / workers
            lines.append(f"| {k} | {e['wall_s']} | {e['startup_s']} | {e['job_s_sum']} | "
                         f"{e['job_s_sum'] / e['wall_s']:.2f} | {other:.1f} |")
        lines += ["", f"- Ray 2 workers vs local 1 worker: **{eng['speedup_ray2_over_local1']:.2f}x** speed-up",
                  "- Ray overhead (Ray 1 worker minus local 1 worker): "
                  f"**{eng['overhead_ray1_minus_local1_s']:.1f} s** per build",
                  "- rows are identical across engines (tests/test_metadb.py::test_ray_rows_equal_local_rows)", ""]
    if info:
        lines += ["## Label quality (database built so far)", "",
                  f"`dass-edge meta info {info['path']}`: {info['rows']} rows, {info['tasks']} tasks, "
                  f"seed Spearman **{info['seed_spearman']}**, mean seed gap / accuracy spread "
                  f"**{info['seed_gap_over_spread']}** (targets >= 0.8 and <= 0.25).", "",
                  "| task | teacher | teacher val | students | rows | acc range | seed pairs | seed rho | mean gap "
                  "| spread |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for t in info["per_task"]:
            a = t["seed_agreement"] or {}
            lines.append(f"| {t['task']}{' (held out)' if t['heldout'] else ''} | {t['teacher_model']} | "
                         f"{t['teacher_val_acc']} | {t['students']} | {t['rows']} | "
                         f"{t['min_acc']:.1f}-{t['max_acc']:.1f} | {a.get('students', '-')} | "
                         f"{a.get('spearman', '-')} | {a.get('mean_gap', '-')} | {a.get('spread', '-')} |")
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = path.read_text() if path.exists() else ""
    marker = "<!-- recipe -->"
    tail = existing[existing.index(marker):] if marker in existing else ""
    path.write_text("\n".join(lines) + ("\n" + tail if tail else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", type=Path, default=ROOT / "metadb/teachers/glyph-hebrew.safetensors")
    ap.add_argument("--task", default="glyph-hebrew")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ray-jobs", type=int, default=8)
    ap.add_argument("--ray-epochs", type=int, default=2)
    ap.add_argument("--db", type=Path, default=ROOT / "dass_edge/assets/metadb.jsonl")
    ap.add_argument("--skip", default="", help="comma-separated: throughput, ray, labels")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/distill.md")
    args = ap.parse_args()
    skip = set(args.skip.split(","))
    cmd = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    # Figures of a skipped section are kept from the previous run (benchmarks/results/distill.json).
    saved_path = args.out.with_suffix(".json")
    saved = json.loads(saved_path.read_text()) if saved_path.is_file() else {}
    tp = throughput(args.teacher, args.task, args.epochs, args.repeats) if "throughput" not in skip else saved.get("tp")
    print(tp and {k: v for k, v in tp.items() if k != "all"}, flush=True)
    eng = engines(args.teacher, args.task, args.ray_jobs, args.ray_epochs) if "ray" not in skip else saved.get("eng")
    print(eng, flush=True)
    for section, name in ((tp, "throughput"), (eng, "ray")):
        if section is not None and name not in skip:
            section["command"], section["date"] = cmd, time.strftime("%Y-%m-%d %H:%M %Z")
    saved_path.write_text(json.dumps({"tp": tp, "eng": eng}, indent=2) + "\n")
    info = None
    if "labels" not in skip and args.db.is_file():
        rel = args.db.relative_to(ROOT) if args.db.is_absolute() else args.db
        info = db_info(read_rows(args.db)) | {"path": str(rel)}
    write_report(args.out, cmd, tp, eng, info)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
