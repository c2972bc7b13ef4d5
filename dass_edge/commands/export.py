"""``dass-edge export``: parse, call :func:`dass_edge.export.export`, print its record."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from dass_edge.commands._common import console, err_console, print_json, set_threads, threads_option

__all__ = ["export_command"]


def export_command(
    source: Path = typer.Argument(..., help="A run folder (runs/<id>), a rank folder, or a student checkpoint."),
    fmt: str = typer.Option("onnx", "--format", "-f", help="onnx (FP32, the default), onnx-fp16, onnx-int8 (Q/DQ, "
                            "FP32 beside it) or tensorrt. Artifacts of other formats already in the output folder are "
                            "kept, and so is their record (export.json: earlier_artifacts)."),
    device: str = typer.Option("cpu", "--device", help="Device profile: latency backend and INT8 flavour."),
    host: str = typer.Option(None, "--host", help="user@device: build the engine and measure on the device (SSH)."),
    calib: int = typer.Option(None, "--calib", help="INT8 calibration images from the train split (default 512)."),
    calib_method: str = typer.Option("minmax", "--calib-method", help="minmax, entropy or percentile."),
    out: Path = typer.Option(None, "--out", help="Output folder (default: export/ next to the checkpoint)."),
    rank: int = typer.Option(1, "--rank", help="Which ranked student of a run folder."),
    task: str = typer.Option(None, "--task", help="Built-in task to verify on, if the checkpoint records none."),
    data: Path = typer.Option(None, "--data", help="Image folder to verify on, if the checkpoint records none."),
    precision: str = typer.Option(None, "--precision", help="TensorRT engine precision: int8 or fp16."),
    fp16_io: bool = typer.Option(False, "--fp16-io", help="FP16 model with float16 inputs/outputs (default float32)."),
    no_latency: bool = typer.Option(False, "--no-latency", help="Skip latency measurement (quick checks)."),
    threads: int = threads_option(),
    json_out: bool = typer.Option(False, "--json", help="Print export.json instead of a table."),
) -> None:
    """Export a distilled student to ONNX (FP32/FP16/INT8 Q/DQ) or a TensorRT engine, verified and measured."""
    set_threads(threads)
    from dass_edge.export import export

    extra = {} if calib is None else {"calib": calib}
    with err_console.status("exporting") as status:
        record = export(source, fmt, device=device, host=host, **extra, calib_method=calib_method, out=out,
                        rank=rank, task=task, data_dir=data, trt_precision=precision, fp16_io=fp16_io,
                        measure=not no_latency,
                        on_step=lambda msg: status.update(msg))
    if json_out:
        print_json(record)
        return
    _print(record)


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _print(record: dict) -> None:
    ref = record["reference_top1"]
    src = Path(record["source"]["checkpoint"]).name
    table = Table(title=f"{src} → {record['format']} for {record['target']['device']} ({record['target']['backend']})")
    for col in ("artifact", "size", "max|Δ|", "top-1", "Δtop-1", "p50 ms", "LUT ms"):
        table.add_column(col, justify="left" if col == "artifact" else "right", no_wrap=True)
    table.add_row("pytorch", "-", "0", _num(ref, ".2f"), "-", "-", "-")
    for a in record["artifacts"]:
        drop = None if a["top1"] is None or ref is None else a["top1"] - ref
        table.add_row(a["format"], f"{a['bytes'] / 1024:.0f}K", _num(a["parity_max_abs"], ".1e"),
                      _num(a["top1"], ".2f"), _num(drop, "+.2f"), _num(a["latency_ms"], ".3f"),
                      _num(a["predicted_latency_ms"], ".3f"))
    console.print(table)
    trt = record.get("tensorrt")
    out_dir = Path(record["artifacts"][0]["path"]).parent
    plain = {"soft_wrap": True, "markup": False, "highlight": False}
    if trt and not trt.get("engine"):
        console.print(f"TensorRT engine not built: {trt['reason']}. Wrote {trt['onnx']}; copy {out_dir} to the device "
                      "and build it there with either:", **plain)
        console.print(f"  {trt['commands']['trtexec']}", **plain)
        console.print(f"  {trt['commands']['python']}", **plain)
    for note in record["notes"]:
        console.print(f"note: {note}", **plain)
    earlier = record.get("earlier_artifacts") or []
    if earlier:
        console.print("kept from earlier exports (recorded in export.json): "
                      + ", ".join(f"{a['file']} ({a.get('export_format')})" for a in earlier), **plain)
    files = ", ".join([a["file"] for a in record["artifacts"]] + (["trt_build.py"] if trt else []))
    console.print(f"wrote {files} and export.json to {out_dir}", **plain)
