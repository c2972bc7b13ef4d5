"""One unit of work each: train a task's teacher, or KD-train one student. Plain dicts in and out,
so the same functions run in-process, in a process pool, or as Ray tasks, with the same result.

Every job pins torch's thread count and seeds before it starts: on a CPU that makes a run
deterministic, so a row does not depend on which engine or worker produced it.
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import torch

from dass_edge import __version__
from dass_edge.errors import DassEdgeError
from dass_edge.io import file_sha256
from dass_edge.validate import finite_or_none

__all__ = ["teacher_job", "kd_job", "pin_threads", "device_label"]


def pin_threads(threads: int, seed: int = 0) -> None:
    torch.set_num_threads(max(1, int(threads)))
    torch.manual_seed(seed)


def device_label(device: str) -> str:
    """What a row records as the device it was trained on (``cpu`` or ``cuda:<GPU name>``)."""
    if device.startswith("cuda"):
        return f"cuda:{torch.cuda.get_device_name(torch.device(device))}"
    return "cpu"


def teacher_job(job: dict) -> dict:
    """Train a teacher for ``job['task']`` and store it in half precision at ``job['out']``.

    Training resumes from a work file in ``job['work_dir']``; the stored teacher is the half-precision
    model (re-evaluated, so its recorded accuracies are those of the stored weights).
    """
    from dass_edge.data import load_task
    from dass_edge.models.checkpoint import load_checkpoint, save_checkpoint
    from dass_edge.models.resnet import model_spec
    from dass_edge.training.loop import Recipe, evaluate
    from dass_edge.training.teacher import chance_accuracy, teacher_learned, train_teacher

    pin_threads(job["threads"], job["recipe"]["seed"])
    data = load_task(job["task"], resolution=job["resolution"])
    mean, std = data.mean_std
    spec = model_spec(job["model"], num_classes=data.num_classes, resolution=data.resolution, mean=mean, std=std,
                      class_names=data.class_names)
    work = Path(job["work_dir"]) / f"{job['task']}-{job['model']}-r{job['resolution']}.safetensors"
    t0 = time.perf_counter()
    meta = train_teacher(data, work, Recipe(**job["recipe"]), spec, device=job.get("device", "cpu"))
    model, _ = load_checkpoint(work)
    half = model.half().float().eval()
    meta.update(model=job["model"], val_acc=round(evaluate(half, data.val, mean, std), 3),
                test_acc=round(evaluate(half, data.test, mean, std), 3), precision="float16",
                wall_seconds=round(time.perf_counter() - t0, 1), device=device_label(job.get("device", "cpu")))
    if not teacher_learned(meta["val_acc"], data.num_classes):  # its rows would be students distilled from noise
        work.unlink(missing_ok=True)  # a rerun with another model or recipe starts afresh
        raise DassEdgeError(f"the {job['model']} teacher of {job['task']} did not learn: {meta['val_acc']:.1f}% "
                            f"validation accuracy, chance {chance_accuracy(data.num_classes):.1f}%; no teacher saved, "
                            "no rows built (try another teacher model or more --teacher-epochs)")
    save_checkpoint(job["out"], model.half(), meta)
    work.unlink(missing_ok=True)
    return {"task": job["task"], "path": job["out"], "val_acc": meta["val_acc"], "test_acc": meta["test_acc"]}


def kd_job(job: dict) -> dict:
    """KD-train one student and return its database row."""
    from dass_edge.data import load_task
    from dass_edge.data.frozen import check_frozen
    from dass_edge.metadb.schema import SCHEMA_VERSION
    from dass_edge.models.checkpoint import load_checkpoint
    from dass_edge.space import Arch, SearchSpace, spec_flops, spec_params
    from dass_edge.training.distill import KDConfig, distill

    config = KDConfig.from_dict(job["config"]).with_seed(job["seed"])
    pin_threads(job["threads"], job["seed"])
    t0 = time.perf_counter()
    if file_sha256(job["teacher_path"]) != job["teacher_sha256"]:
        raise DassEdgeError(f"teacher {job['teacher_path']} changed since the build was planned")
    teacher, tmeta = load_checkpoint(job["teacher_path"])
    data = load_task(job["task"], resolution=job["resolution"])
    if job.get("task_sha256"):
        check_frozen(job["task"], job["task_sha256"])
    arch = Arch.from_dict(job["arch"])
    device = job.get("device", "cpu")
    result = distill(teacher, arch, data, config, teacher_sha256=job["teacher_sha256"], cache_dir=job["cache_dir"],
                     device=device)
    space = SearchSpace(teacher.spec)
    sspec = space.to_spec(arch)
    ts = teacher.spec
    return {
        "schema": SCHEMA_VERSION,
        "task": job["task"], "heldout": bool(job["heldout"]), "resolution": job["resolution"],
        "num_classes": data.num_classes, "n_train": len(data.train),
        "teacher_sha256": job["teacher_sha256"], "teacher_file": Path(job["teacher_path"]).name,
        "teacher_model": tmeta.get("model"),
        "teacher_spec": {"depths": list(ts.depths), "widths": list(ts.widths), "stem": ts.stem},
        "teacher_val_acc": tmeta.get("val_acc"), "teacher_test_acc": tmeta.get("test_acc"),
        "teacher_params": spec_params(ts), "teacher_flops": spec_flops(ts),
        "task_file": job.get("task_file"), "task_sha256": job.get("task_sha256"),
        "sampling": job.get("sampling", {"kind": "even"}), "teacher_resolution": ts.resolution,
        "arch": arch.to_dict(), "arch_key": arch.key(), "fixed_last_stage": space.fixed_last_stage,
        "seed": job["seed"], "recipe": config.to_dict(), "recipe_hash": config.recipe_hash(),
        "val_acc": round(result.val_acc, 4), "final_val_acc": round(result.final_val_acc, 4),
        "test_acc": finite_or_none(round(result.test_acc, 4)), "best_epoch": result.best_epoch,
        "val_curve": [round(h["val_acc"], 3) for h in result.history],
        "params": spec_params(sspec), "flops": spec_flops(sspec),
        "seconds": round(time.perf_counter() - t0, 2), "images_per_second": round(result.images_per_second, 1),
        "threads": job["threads"], "engine": job.get("engine", "local"), "device": device_label(device),
        "cache_hit": result.cache["hit"], "cache_misses": result.cache["misses"],
        "versions": {"dass_edge": __version__, "torch": torch.__version__, "python": sys.version.split()[0]},
        "host": platform.node(), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
