"""``dass-edge teacher``: train a teacher on a built-in task or an image folder, and inspect one."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from dass_edge.commands._common import (
    console,
    err_console,
    finite_option,
    print_json,
    progress_bar,
    set_threads,
    threads_option,
)
from dass_edge.errors import DassEdgeError
from dass_edge.space import SearchSpace, spec_flops, spec_params

app = typer.Typer(help="Train and inspect teachers.", no_args_is_help=True)


def parse_ints(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise DassEdgeError(f"{what} must be comma-separated integers, e.g. 16,32,64,128 (got {text!r})") from None
    if len(values) != 4:
        raise DassEdgeError(f"{what} needs 4 values, one per stage (got {len(values)})")
    return values


def rich_training_progress(progress, description: str):
    """Adapt the library's ``progress(event, info)`` callback to a rich progress bar."""
    task_id = progress.add_task(description, total=None, status="")

    def callback(event: str, info: dict) -> None:
        if event == "start":
            progress.update(task_id, total=info["total"], completed=info["done"])
        elif event == "step":
            progress.update(task_id, advance=1, status=f"epoch {info['epoch']} loss {info['loss']:.3f}")
        elif event == "epoch":
            progress.update(task_id, status=f"epoch {info['epoch']} val {info['val_acc']:.1f}%")

    return callback


@app.command("train")
def train_cmd(
    out: Path = typer.Option(..., "--out", help="Checkpoint to write (.safetensors)."),
    task: str = typer.Option(None, "--task", help="Built-in task (see 'dass-edge data list')."),
    data: Path = typer.Option(None, "--data", help="Image folder: one sub-folder per class."),
    epochs: int = typer.Option(30, help="Training epochs."),
    widths: str = typer.Option(None, help="Stage widths, e.g. 16,32,64,128 (default: the demo teacher's)."),
    depths: str = typer.Option(None, help="Blocks per stage, e.g. 2,2,2,2 (default: the demo teacher's)."),
    stem: str = typer.Option("small", help="small (3x3, small images) or imagenet (7x7 + max-pool)."),
    resolution: int = typer.Option(32, help="Input resolution."),
    lr: float = typer.Option(0.1, help="Peak learning rate (SGD Nesterov, cosine).", callback=finite_option),
    batch_size: int = typer.Option(128, help="Batch size."),
    label_smoothing: float = typer.Option(0.1, help="Label smoothing.", callback=finite_option),
    seed: int = typer.Option(0, help="Random seed."),
    threads: int = threads_option(),
    json_out: bool = typer.Option(False, "--json", help="Print the checkpoint metadata as JSON."),
) -> None:
    """Train a teacher (resumable: rerun the same command after a kill)."""
    if task is None and data is None:
        raise DassEdgeError("give --task NAME (see 'dass-edge data list') or --data DIR")
    from dass_edge.data import load_task
    from dass_edge.training.loop import Recipe
    from dass_edge.training.teacher import (
        DEMO_TEACHER_DEPTHS,
        DEMO_TEACHER_WIDTHS,
        chance_accuracy,
        teacher_learned,
        teacher_spec_for,
        train_teacher,
    )

    recipe = Recipe(epochs=epochs, lr=lr, batch_size=batch_size, label_smoothing=label_smoothing, seed=seed)
    recipe.validate()
    w = parse_ints(widths, "--widths") if widths is not None else DEMO_TEACHER_WIDTHS
    d = parse_ints(depths, "--depths") if depths is not None else DEMO_TEACHER_DEPTHS
    set_threads(threads)
    task_data = load_task(task, data, resolution)
    spec = teacher_spec_for(task_data, w, d, stem)
    with progress_bar() as progress:
        meta = train_teacher(task_data, out, recipe, spec, progress=rich_training_progress(progress, "teacher"))
    if not teacher_learned(meta["val_acc"], task_data.num_classes):  # stderr, so --json stays clean
        err_console.print(f"warning: this teacher did not learn (validation {meta['val_acc']:.1f}%, chance "
                          f"{chance_accuracy(task_data.num_classes):.1f}%): students distilled from it learn noise; "
                          "try a lower --lr, more --epochs or a shallower model")
    if json_out:
        print_json({k: v for k, v in meta.items() if k != "history"} | {"path": str(out)})
        return
    console.print(f"wrote {out}: val {meta['val_acc']:.2f}%  test {meta['test_acc']:.2f}%  "
                  f"({spec_params(spec) / 1e6:.2f}M params, {meta['images_per_second']:.0f} img/s)")


@app.command("info")
def info_cmd(
    checkpoint: Path = typer.Argument(None, help="Teacher checkpoint (default: the shipped demo teacher)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a teacher's shape, size, accuracy and the size of its student space."""
    from dass_edge.models.checkpoint import load_checkpoint
    from dass_edge.training.teacher import load_teacher

    model, meta = load_teacher(checkpoint) if checkpoint is None else load_checkpoint(checkpoint)
    spec = model.spec
    space = SearchSpace(spec)
    row = {"depths": list(spec.depths), "widths": list(spec.widths), "stem": spec.stem,
           "num_classes": spec.num_classes, "resolution": spec.resolution, "params": spec_params(spec),
           "flops": spec_flops(spec), "task": meta.get("task"), "val_acc": meta.get("val_acc"),
           "test_acc": meta.get("test_acc"), "space_size": space.size()}
    if json_out:
        print_json(row)
        return
    table = Table(title=str(checkpoint or "demo teacher"), show_header=False)
    for k, v in row.items():
        table.add_row(k, str(v))
    console.print(table)
