"""``dass-edge distill``: KD-train one student, from a search run (``RUN_DIR --rank K``) or an explicit arch."""

from __future__ import annotations

from pathlib import Path

import typer

from dass_edge.commands._common import (
    console,
    finite_option,
    old_device_option,
    pick_train_device,
    print_json,
    progress_bar,
    set_threads,
    threads_option,
    train_device_option,
)
from dass_edge.commands.teacher import rich_training_progress
from dass_edge.errors import DassEdgeError
from dass_edge.io import ensure_writable_dir

__all__ = ["distill_command"]

#: ``--epochs`` default: a full run (what the search's predicted accuracy is an estimate of).
FULL_EPOCHS = 30


def distill_command(
    run_dir: Path = typer.Argument(None, help="Search run folder (with search.json); output goes to RUN_DIR/rank<K>."),
    rank: int = typer.Option(1, "--rank", help="Which of the run's top students (1 = best)."),
    arch: str = typer.Option(None, "--arch", help="Explicit student: JSON {depths, widths} or an arch key."),
    teacher: Path = typer.Option(None, "--teacher", help="Teacher checkpoint (default: the shipped demo teacher)."),
    task: str = typer.Option(None, "--task", help="Built-in task (default: the teacher's own task)."),
    data: Path = typer.Option(None, "--data", help="Image folder: one sub-folder per class."),
    out: Path = typer.Option(None, "--out", help="Output folder (with --arch)."),
    resolution: int = typer.Option(None, help="Input resolution (default: the teacher's)."),
    epochs: int = typer.Option(FULL_EPOCHS, help="KD epochs (fewer make a quick smoke run)."),
    lr: float = typer.Option(0.01, help="Peak learning rate (SGD Nesterov, 1 warm-up epoch, cosine).",
                             callback=finite_option),
    batch_size: int = typer.Option(128, help="Batch size."),
    weight_decay: float = typer.Option(3e-5, help="Weight decay (DaSS: 3e-5).", callback=finite_option),
    seed: int = typer.Option(0, help="Seed of the data order and augmentation."),
    loss: str = typer.Option("kd", help="Loss key: kd (alpha*CE + (1-alpha)*T^2*KL) or ce (no teacher)."),
    alpha: float = typer.Option(0.5, help="Weight of the cross-entropy term.", callback=finite_option),
    temperature: float = typer.Option(6.0, help="KD temperature T.", callback=finite_option),
    remap_mode: str = typer.Option("first", "--remap", help="Teacher->student remapping: first, last or uniform."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Run the teacher live instead of caching its outputs."),
    train_device: str = train_device_option(),
    old_device: str = old_device_option(),
    threads: int = threads_option(),
    json_out: bool = typer.Option(False, "--json", help="Print the JSON log (without history)."),
) -> None:
    """KD-train a student remapped from the teacher; resumable (rerun the same command after a kill)."""
    from dass_edge.data.builtin import cache_dir
    from dass_edge.training.distill import KDConfig
    from dass_edge.training.distill_run import run_distill, target_from_args, target_from_run
    from dass_edge.training.loop import Recipe, resolve_train_device

    config = KDConfig(recipe=Recipe(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                                    warmup_epochs=min(1.0, epochs / 2), label_smoothing=0.0, seed=seed),
                      loss=loss, alpha=alpha, temperature=temperature, remap=remap_mode).validate()
    torch_device = resolve_train_device(pick_train_device(train_device, old_device))
    if run_dir is not None:
        if arch or teacher or task or data or out:
            raise DassEdgeError("with a run folder, the teacher, data, arch and output come from search.json; "
                                "drop --arch/--teacher/--task/--data/--out")
        target = target_from_run(run_dir, rank)
    else:
        if arch is None or out is None:
            raise DassEdgeError("give a search run folder (dass-edge distill runs/<id> --rank 1) or --arch and --out")
        target = target_from_args(arch, out, teacher, task, data, resolution)
    ensure_writable_dir(target.out)  # fail before the progress bar starts
    set_threads(threads)
    with progress_bar() as progress:
        log = run_distill(target, config, cache_dir=None if no_cache else cache_dir(),
                          progress=rich_training_progress(progress, f"distill {target.arch.key()}"),
                          device=torch_device)
    if json_out:
        print_json({k: v for k, v in log.items() if k != "history"} | {"out": str(target.out)})
        return
    console.print(f"wrote {target.out}/student.safetensors: val {log['val_acc']:.2f}% (best epoch "
                  f"{log['best_epoch']}), final {log['final_val_acc']:.2f}%, test {log['test_acc']:.2f}%  "
                  f"({log['params'] / 1e6:.2f}M params, {log['images_per_second']:.0f} img/s)")
    predicted = _predicted(run_dir, rank) if run_dir is not None else None
    if epochs < FULL_EPOCHS:
        what = (f"the search's predicted {predicted:.2f}% estimates this student after a full distillation "
                "(the predictor learned from complete KD runs and is anchored on the teacher's accuracy), "
                "not after a short one" if predicted is not None else "the accuracy above is not what it reaches")
        console.print(f"note: {epochs} epoch{'s' * (epochs != 1)} is a smoke run: {what}; run without --epochs "
                      f"({FULL_EPOCHS}) to approach it", soft_wrap=True, markup=False, highlight=False)


def _predicted(run_dir: Path, rank: int) -> float | None:
    """The rank's predicted accuracy from the run's search.json (already read and checked by distill)."""
    import json

    try:
        return float(json.loads((run_dir / "search.json").read_text())["top"][rank - 1]["predicted_acc"])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
