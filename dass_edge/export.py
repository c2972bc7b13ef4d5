"""``export``: turn a distilled student into deployable artifacts, each verified and measured.

One call makes the FP32 ONNX model and then runs the format's registered loader chain
(:mod:`dass_edge.exporters.formats`: FP16, INT8 Q/DQ, a TensorRT engine, ...); checks each against
PyTorch on the task's images (parity and top-1); measures each on
the target profile's backend next to the lookup-table prediction; and writes everything plus
``export.json`` into the output folder at the very end, so a failed export leaves nothing behind.
The returned dict is exactly what ``export.json`` holds.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dass_edge import __version__
from dass_edge.data import normalize
from dass_edge.errors import DassEdgeError
from dass_edge.exporters.compare import FP32_TOLERANCE, Comparator, fp16_tolerance
from dass_edge.exporters.formats import FORMATS, get_format
from dass_edge.exporters.fp16 import Fp16FromOnnx
from dass_edge.exporters.int8 import CALIBRATION_METHODS, QdqFromOnnx, qdq_summary, quant_config
from dass_edge.exporters.measure import Target, load_target, measure_artifact, predict_latency
from dass_edge.exporters.onnx_export import OnnxFromTorch, metadata_props, student_metadata
from dass_edge.exporters.source import ExportSource, load_source, load_source_task
from dass_edge.exporters.tensorrt import EngineFromOnnx, build_commands, tensorrt_availability
from dass_edge.io import StagedOutput, file_sha256
from dass_edge.latency.runners import BackendUnavailable, RunnerError, TorchRunner, make_runner

__all__ = ["DEFAULT_CALIB", "FORMATS", "MIN_CALIB", "TRT_PRECISIONS", "ExportJob", "export"]

TRT_PRECISIONS = ("int8", "fp16")
#: Calibration images used by default, and the fewest the issue asks for where the split has them.
DEFAULT_CALIB, MIN_CALIB = 512, 300
_VERIFY_BATCH = 256


def export(
    source: str | Path,
    fmt: str = "onnx",
    *,
    device: str = "cpu",
    host: str | None = None,
    calib: int = DEFAULT_CALIB,
    calib_method: str = "minmax",
    out: str | Path | None = None,
    rank: int = 1,
    task: str | None = None,
    data_dir: str | Path | None = None,
    trt_precision: str | None = None,
    fp16_io: bool = False,
    measure: bool = True,
    on_step: Callable[[str], None] | None = None,
) -> dict:
    """Export a student and return the ``export.json`` record.

    Args:
        source: a run folder (``runs/<id>``, student of rank ``rank``), a rank folder, or a checkpoint.
        fmt: ``onnx`` (FP32), ``onnx-fp16``, ``onnx-int8`` (static Q/DQ) or ``tensorrt`` (engine).
        device: device profile; decides the latency backend and the INT8 flavour (default ``cpu``).
        host: ``user@host`` to build the TensorRT engine on the device over SSH.
        calib: calibration images for INT8 (taken from the train split; default 512, at least 300
            where the split has them).
        calib_method: ``minmax`` (default), ``entropy`` or ``percentile``.
        out: output folder; default ``<checkpoint folder>/export``.
        task, data_dir: the images to calibrate and verify on, when the checkpoint does not record them.
        trt_precision: ``int8`` (from Q/DQ) or ``fp16`` for ``tensorrt``; default from the profile, else int8.
        fp16_io: give the FP16 model float16 inputs/outputs (default: float32 I/O, casts inside).
        measure: measure latency (turn off only for quick checks).
        on_step: called with a short message before each step (the CLI shows progress with it).

    Raises:
        DassEdgeError: unknown format, nothing to export, checkpoint/arch mismatch, no task images,
            an unwritable output folder, a failed parity check, or a failed TensorRT build.
    """
    step = on_step or (lambda _msg: None)
    _check_options(fmt, calib, calib_method, trt_precision)
    chain = get_format(fmt)
    src = load_source(source, rank)
    target = load_target(device, host)
    precision = trt_precision or (target.precision if target.precision in TRT_PRECISIONS else "int8")
    step(f"loading task images for {src.checkpoint.name}")
    data = load_source_task(src, task, data_dir)
    spec = src.model.spec
    verify_split = "test" if len(data.test) else "val"
    verify = data.split(verify_split)
    if len(verify) == 0:
        raise DassEdgeError(f"task {data.name!r} has no test or val images to verify the export on")
    images = normalize(verify.images, spec.mean, spec.std).numpy()
    labels = verify.labels.numpy() if verify_split == "test" else None
    job = ExportJob(src, target, fmt, precision, fp16_io, host, step)
    if chain.calibrate(job):
        job.calib_x, job.calib_info = _calibration_images(data, spec, calib, calib_method)
        if job.calib_info["images"] < MIN_CALIB:
            job.notes.append(f"INT8 calibrated on {job.calib_info['images']} images (fewer than {MIN_CALIB})")
    meta = student_metadata(spec.to_dict(), src.meta, src.arch.to_dict(), __version__)
    meta["class_names"] = meta["class_names"] or list(data.class_names)  # older checkpoints lack them

    out_dir = Path(out) if out is not None else src.default_out
    with StagedOutput(out_dir) as stage:
        job.stage = stage
        rows = _write_artifacts(job, chain, metadata_props({**meta, "precision": "fp32"}, spec.to_dict()))
        step("verifying parity and top-1 against PyTorch")
        reference_top1 = _verify(job, rows, images, labels)
        predicted = _latency(job, rows) if measure else None
        job.notes += speed_notes(rows, target.device)
        for row in rows:
            row["bytes"] = stage.path(row["file"]).stat().st_size
            row["sha256"] = file_sha256(stage.path(row["file"]))
            row["path"] = str((out_dir / row["file"]).resolve())
        record = {
            "dass_edge_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "format": fmt,
            "source": {"checkpoint": str(src.checkpoint.resolve()), "sha256": file_sha256(src.checkpoint),
                       "run": str(src.run_dir.resolve()) if src.run_dir else None, "rank": src.rank},
            "target": target.summary(),
            "task": {"name": data.name, "verify_split": verify_split, "verify_images": int(len(images))},
            "metadata": meta,
            "reference_top1": reference_top1,
            "calibration": job.calib_info,
            "predicted_latency": predicted,
            "artifacts": rows,
            "tensorrt": job.tensorrt,
            "notes": job.notes,
        }
        names = [r["file"] for r in rows] + list(chain.files)
        record["earlier_artifacts"] = earlier_artifacts(out_dir, names)
        stage.path("export.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        stage.commit([*names, "export.json"])
    return record


@dataclass
class ExportJob:
    """What the steps of one export share, and the loader steps a format chain is made of."""

    src: ExportSource
    target: Target
    fmt: str
    precision: str  # of the TensorRT engine
    fp16_io: bool
    host: str | None
    step: Callable[[str], None]
    calib_x: np.ndarray | None = None
    calib_info: dict | None = None
    stage: StagedOutput | None = None
    notes: list[str] = field(default_factory=list)
    tensorrt: dict | None = None  # the engine build record (``export.json``'s ``tensorrt``)

    @property
    def stem(self) -> str:
        return self.src.checkpoint.stem

    def fp16(self, source: dict) -> dict:
        """FP16 ONNX from ``source``'s ONNX (float32 I/O unless ``fp16_io``)."""
        self.step("converting to FP16 ONNX")
        name = f"{self.stem}.fp16.onnx"
        Fp16FromOnnx(self.stage.path(source["file"]), self.stage.path(name), keep_io_types=not self.fp16_io)()
        return artifact_row("onnx-fp16", "fp16", name, source["file"])

    def int8(self, source: dict, flavour: str) -> dict:
        """INT8 Q/DQ ONNX from ``source``'s ONNX, calibrated on the job's images for INT8 ``flavour``."""
        if self.calib_x is None:
            raise DassEdgeError(f"format {self.fmt!r} quantizes to INT8 but did not ask for calibration images")
        cfg = quant_config(flavour, self.calib_info["method"])
        self.step(f"quantizing to INT8 Q/DQ ({cfg.activation_type}/{cfg.weight_type}, {len(self.calib_x)} images)")
        name = f"{self.stem}.int8-trt.onnx" if cfg.target == "tensorrt" else f"{self.stem}.int8.onnx"
        QdqFromOnnx(self.stage.path(source["file"]), self.stage.path(name), self.calib_x, cfg)()
        row = artifact_row("onnx-int8", "int8", name, source["file"])
        row["quantization"] = {**cfg.to_dict(), **self.calib_info, **qdq_summary(self.stage.path(name))}
        return row

    def engine(self, source: dict) -> dict | None:
        """A TensorRT engine from ``source``'s ONNX, built on ``--host`` or here; ``None`` (with the reason and
        the commands to build it on the device in ``self.tensorrt``) where neither can build it."""
        self.tensorrt = _tensorrt(self, source)
        if not self.tensorrt.get("engine"):
            return None
        return {**artifact_row("tensorrt", self.precision, self.tensorrt["engine"], source["file"]),
                "runtime": "tensorrt"}


# --- steps ---------------------------------------------------------------------------------------
def _check_options(fmt: str, calib: int, calib_method: str, trt_precision: str | None) -> None:
    get_format(fmt)
    if calib < 1:
        raise DassEdgeError(f"--calib must be >= 1 image, got {calib}")
    if calib_method not in CALIBRATION_METHODS:
        choices = ", ".join(CALIBRATION_METHODS)
        raise DassEdgeError(f"unknown calibration method {calib_method!r}; choose one of {choices}")
    if trt_precision is not None and trt_precision not in TRT_PRECISIONS:
        raise DassEdgeError(f"unknown TensorRT precision {trt_precision!r}; choose one of {', '.join(TRT_PRECISIONS)}")


def _write_artifacts(job: ExportJob, chain, props: dict[str, str]) -> list[dict]:
    """FP32 ONNX always, then the format's loader chain (all staged)."""
    spec = job.src.model.spec
    job.step("exporting FP32 ONNX (torch.onnx dynamo)")
    fp32 = f"{job.stem}.onnx"
    OnnxFromTorch(job.src.model, job.stage.path(fp32), spec.resolution, spec.in_chans, props)()
    first = artifact_row("onnx", "fp32", fp32, None)
    return [first, *chain.make(job, first)]


def artifact_row(fmt: str, precision: str, name: str, made_from: str | None) -> dict:
    """A new artifact's ``export.json`` row (verification and latency fields filled in later)."""
    return {"format": fmt, "precision": precision, "file": name, "made_from": made_from, "runtime": "onnxruntime",
            "parity_max_abs": None, "parity_tolerance": None, "agreement": None, "top1": None,
            "latency_ms": None, "latency_p90_ms": None, "latency_note": None, "predicted_latency_ms": None,
            "predicted_latency_p90_ms": None}


def _calibration_images(data, spec, calib: int, method: str) -> tuple[np.ndarray, dict]:
    """A seeded random subset of the train split (never the test split), normalized like the model's input."""
    split_name = "train" if len(data.train) else "val"
    split = data.split(split_name)
    if len(split) == 0:
        raise DassEdgeError(f"task {data.name!r} has no train or val images to calibrate INT8 on")
    n = min(calib, len(split))
    idx = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))[:n]
    x = normalize(split.images[idx], spec.mean, spec.std).numpy()
    return x, {"images": n, "split": split_name, "requested": calib, "method": method, "seed": 0}


def _verify(job: ExportJob, rows: list[dict], images: np.ndarray, labels: np.ndarray | None) -> float | None:
    """Parity and top-1 of every artifact vs PyTorch, each run by its runtime's (latency) runner; FP32 and FP16
    must be within tolerance. An artifact whose runtime is missing here is noted, not verified."""
    comparator = Comparator(TorchRunner(job.src.model, threads=None, name="pytorch"), images, labels, _VERIFY_BATCH)
    tolerance = {"fp32": FP32_TOLERANCE, "fp16": fp16_tolerance(comparator.reference.abs_max)}
    for row in rows:
        settings = {"backend": row["runtime"], "precision": row["precision"], "threads": None}
        runner = make_runner(settings, str(job.stage.path(row["file"])))
        runner.name = row["file"]
        try:
            res = comparator.check(runner)
        except BackendUnavailable as e:
            job.notes.append(f"{row['file']} not verified here ({row['runtime']}): {e}")
            continue
        except RunnerError as e:
            raise DassEdgeError(f"{row['file']} cannot be run for verification: {e}") from None
        row.update(parity_max_abs=res.max_abs, top1=res.top1, agreement=res.agreement,
                   parity_tolerance=tolerance.get(row["precision"]))
        if row["parity_tolerance"] is not None and res.max_abs > row["parity_tolerance"]:
            raise DassEdgeError(
                f"{row['file']} fails the parity check: max-abs-diff {res.max_abs:.3g} vs PyTorch exceeds "
                f"{row['parity_tolerance']:.3g} on {len(images)} task images; nothing was written"
            )
    return comparator.reference.top1


def _latency(job: ExportJob, rows: list[dict]) -> dict | None:
    """Measure each ONNX artifact on the profile's backend (an engine reports its ONNX's figure, same build) and
    put the LUT prediction next to the artifacts of the table's precision. Returns the prediction."""
    target, measured = job.target, {}
    for row in rows:
        if not row["file"].endswith(".onnx"):  # engines etc. report their ONNX's figure below
            continue
        job.step(f"measuring {row['file']} on {target.device} ({target.backend})")
        result, why = measure_artifact(job.stage.path(row["file"]), target)
        measured[row["file"]] = result
        if result is None:
            row["latency_note"] = why
        else:
            row["latency_ms"], row["latency_p90_ms"] = result.get("p50_ms"), result.get("p90_ms")
    for row in rows:
        source = None if row["file"] in measured else measured.get(row["made_from"])
        if source and target.backend == row["runtime"]:
            row["latency_ms"], row["latency_p90_ms"] = source.get("p50_ms"), source.get("p90_ms")
            row["latency_note"] = f"measured as {row['made_from']} on the {target.backend} backend (same build)"
    missing = sorted({r["latency_note"] for r in rows if r["latency_ms"] is None and r["latency_note"]})
    job.notes.extend(f"latency not measured: {why}" for why in missing)
    predicted, why = predict_latency(target, job.src.model.spec)
    if predicted is None:
        job.notes.append(f"no latency prediction: {why}")
        return None
    for row in (r for r in rows if r["precision"] == target.precision):
        row["predicted_latency_ms"], row["predicted_latency_p90_ms"] = predicted.get("p50_ms"), predicted.get("p90_ms")
    return {**predicted, "precision": target.precision}


def _tensorrt(job: ExportJob, ready: dict) -> dict:
    """Build the engine on ``--host`` or here; otherwise record why not and how to build it on the device.

    The printed ``trtexec`` command matches the TensorRT that built the engine, else the one the profile
    names (``backend_version``; JetPack 5 ships 8.5, which has no ``--stronglyTyped``)."""
    from dass_edge.latency.runners import trt_build

    stage, spec, precision, step = job.stage, job.src.model.spec, job.precision, job.step
    batch, host = job.target.batch, job.host
    shutil.copyfile(trt_build.__file__, stage.path("trt_build.py"))
    engine = f"{job.stem}.{precision}.engine"
    record = {"precision": precision, "onnx": ready["file"], "engine": None, "built_on": None}
    version = job.target.profile.backend_version if job.target.backend == "tensorrt" else None
    if host:  # engines must be built where they run: the device wins over a local GPU
        from dass_edge.exporters.remote import build_engine_remote

        step(f"building the TensorRT engine on {host}")
        version = build_engine_remote(host, stage.path(ready["file"]), stage.path(engine), stage.path("trt_build.py"),
                                      opt_batch=batch, precision=precision, target=job.target.ssh)
        record.update(engine=engine, built_on=host, tensorrt_version=version)
    else:
        available = tensorrt_availability()
        if available.ok:
            step(f"building the TensorRT engine here ({available.reason})")
            EngineFromOnnx(stage.path(ready["file"]), stage.path(engine), opt_batch=batch, precision=precision)()
            version = available.version
            record.update(engine=engine, built_on="local", tensorrt_version=version)
        else:
            record["reason"] = f"{available.reason}; no --host given to build on the device"
    record["commands"] = build_commands(ready["file"], engine, spec.resolution, spec.in_chans, opt_batch=batch,
                                        precision=precision, trt_version=version or None)
    return record


def speed_notes(rows: list[dict], device: str) -> list[str]:
    """Say so when a reduced-precision artifact is not faster than FP32 on the device (tiny students often
    are not: quantize/dequantize overhead), and which one to ship then."""
    fp32 = next((r for r in rows if r["format"] == "onnx"), None)
    if fp32 is None or fp32.get("latency_ms") is None:
        return []
    notes = []
    for r in rows:
        if r is fp32 or r.get("latency_ms") is None or r.get("runtime") == "tensorrt":
            continue
        if r["latency_ms"] >= fp32["latency_ms"]:
            notes.append(f"{r['file']} ({r['precision'].upper()}) is not faster than FP32 on {device} "
                         f"({r['latency_ms']:.3f} vs {fp32['latency_ms']:.3f} ms p50): for speed, ship {fp32['file']} "
                         f"on this device (the {r['precision'].upper()} one is only smaller)")
    return notes


def earlier_artifacts(out_dir: Path, names: list[str]) -> list[dict]:
    """The artifacts an earlier ``export.json`` in ``out_dir`` recorded that this export does not replace
    and that are still there (with their checks), so exporting another format never loses their record."""
    try:
        old = json.loads((Path(out_dir) / "export.json").read_text())
    except (OSError, ValueError):
        return []
    kept = [*(old.get("earlier_artifacts") or []), *({**a, "export_format": old.get("format"),
                                                      "exported": old.get("created")}
                                                     for a in old.get("artifacts") or [])]
    out, seen = [], set(names)
    for a in kept:
        if isinstance(a, dict) and a.get("file") not in seen and (Path(out_dir) / str(a.get("file"))).is_file():
            seen.add(a["file"])
            out.append(a)
    return out
