"""The human side of a search run folder: ``report.md`` (what was searched, the picks, how to go on)
and ``pareto.png`` (every scored student, the Pareto front, the budget, the picks).

Both are made from the ``search.json`` record and the scored candidates only, so a report can be
redrawn from a run folder later. Plots use matplotlib's Agg canvas directly (no pyplot state, no
display needed).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["plot_pareto", "render_markdown", "write_report"]


def write_report(folder: str | Path, record: dict, candidates: Sequence[dict]) -> list[Path]:
    """Write ``report.md`` and ``pareto.png`` into ``folder``; returns their paths.

    Args:
        folder: where to write (the search's staging folder).
        record: the ``search.json`` content.
        candidates: every scored student: ``latency_ms``, ``predicted_acc``, ``on_front`` (and ``arch_key``).
    """
    folder = Path(folder)
    png = plot_pareto(folder / "pareto.png", record, candidates)
    md = folder / "report.md"
    md.write_text(render_markdown(record))
    return [md, png]


def _budget(record: dict) -> str:
    budget = record.get("budget") or {}
    return budget.get("text") or f"{record['budget_ms']:g} ms"


def _fmt_params(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.0f}K"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def _db_text(db: object) -> str:
    """The predictor's meta-database in words (``search.json`` keeps the full record)."""
    if not isinstance(db, dict):
        return f"the meta-database {db}"
    parts = []
    if db.get("rows") is not None:
        parts.append(f"{db['rows']:,} KD runs")
    for key, what in (("train_tasks", "meta-training tasks"), ("heldout_tasks", "held-out tasks")):
        if db.get(key):
            parts.append(f"{len(db[key])} {what} ({', '.join(map(str, db[key]))})")
    if db.get("sha256"):
        parts.append(f"sha256 {str(db['sha256'])[:12]}…")
    name = f"`{db['file']}`" if db.get("file") else "its meta-database"
    return name + (f": {'; '.join(parts)}" if parts else "")


def render_markdown(record: dict) -> str:
    """The readable summary: inputs, the picks as a table, provenance, notes and the next commands."""
    table, pred, teacher = record["table"], record.get("predictor") or {}, record["teacher"]
    what = record["task"] or record["data_dir"]
    refine = record.get("refine")
    who = "demo teacher" if teacher["path"] is None else f"teacher `{teacher['path']}`"
    lines = [
        f"# dass-edge search `{record['id']}`",
        "",
        f"The {len(record['top'])} best students of the {who}"
        f" for `{what}` under **{_budget(record)}** (p50) on **{record['device']}**, by predicted "
        "accuracy after knowledge distillation.",
        "",
        "| rank | arch | predicted acc (%) | p50 ms | p90 ms | params | MFLOPs | on front |"
        + (" short KD val acc (%) |" if refine else ""),
        "|---:|---|---:|---:|---:|---:|---:|:---:|" + ("---:|" if refine else ""),
    ]
    for p in record["top"]:
        short = (f" {p['refine_val_acc']:.1f} |" if "refine_val_acc" in p else " - |") if refine else ""
        lines.append(f"| {p['rank']} | `{p['arch_key']}` | {p['predicted_acc']:.2f} | {p['latency_ms']:.3f} | "
                     f"{p['latency_p90_ms']:.3f} | {_fmt_params(p['params'])} | {p['flops'] / 1e6:.1f} | "
                     f"{'yes' if p.get('on_front') else 'no'} |" + short)
    lines += [
        f"| teacher | `{teacher['arch_key']}` | - | {teacher['latency_ms']:.3f} | {teacher['latency_p90_ms']:.3f} | "
        f"{_fmt_params(teacher['params'])} | {teacher['flops'] / 1e6:.1f} | |" + (" |" if refine else ""),
        "",
        "Picks are the most accurate students of the Pareto front (no pick is both slower and less accurate "
        "than another scored student); predicted accuracy is the predictor's estimate, not a measurement: "
        "distill a pick to know its accuracy.",
        "",
        "![Pareto front](pareto.png)",
        "",
        "## Search",
        "",
        f"- {record['evaluated']:,} students scored in {record['seconds']:.1f} s ({record['algo']}, seed "
        f"{record['seed']}, --budget-evals {record['budget_evals']:,}) out of {record['space']['size']:,} in the "
        f"teacher's space; {len(record['front'])} on the Pareto front (all in `candidates.csv`).",
        f"- Fastest student found: `{record['fastest']['arch_key']}` at {record['fastest']['latency_ms']:.3f} ms; "
        f"the teacher itself: {teacher['latency_ms']:.3f} ms"
        + ("" if record["budget_binds"] else " (the budget does not bind)") + ".",
    ]
    if refine:
        n = refine["finalists"]
        lines.append(f"- Short-KD refinement: {n} finalist{'s' if n != 1 else ''} (one per depth pattern: the "
                     f"predictor's best, then the largest by FLOPs) distilled for {refine['epochs']} of the recipe's "
                     f"{refine['recipe_epochs']} epochs on {refine['device']} in {refine['seconds']:.0f} s; they "
                     "lead the table, ordered by their validation accuracy then (column 'short KD val acc').")
    if record.get("params_max") is not None:
        lines.append(f"- At most {record['params_max']:,} parameters.")
    fid = table.get("fidelity") or {}
    lines += [
        f"- Latency: `{table['device']}` table measured on {table['measured_on']} ({table['backend']} "
        f"{table.get('backend_version') or ''}, {table['precision']}, batch {table['batch']}, "
        f"{table.get('threads')} thread(s)) on {str(table.get('date') or '')[:10]}, {table['entries']} entries "
        f"({table['source']}: `{table['path']}`); corrected median, p90 from the table's p90 ratio.",
    ]
    if fid.get("students"):
        lines.append(f"  Fidelity on {fid['students']} whole students: {_pct(fid.get('within_10pct'))} within ±10%, "
                     f"RMSPE {_pct(fid.get('rmspe'))}, Spearman {fid.get('spearman') or 0:.3f}.")
    pinfo = ", ".join(f"{k} `{pred[k]}`" if k == "path" else f"{k} {pred[k]}"
                      for k in ("version", "path") if pred.get(k) is not None)
    lines.append(f"- Accuracy: predictor {pinfo or '(no provenance given)'}.")
    if pred.get("db") is not None:
        lines.append(f"  Learned from {_db_text(pred['db'])}.")
    held = pred.get("heldout_metrics")
    if isinstance(held, dict) and held:
        lines.append("  Held-out: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                                for k, v in sorted(held.items())) + ".")
    if record.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in record["notes"]]
    steps = record["next_steps"]
    lines += [
        "",
        "## Next steps",
        "",
        "Distill the best pick (use `--rank K` for another), then export it:",
        "",
        "```bash",
        steps["distill"],
        steps["export"],
        "```",
        "",
        "Each `rank<k>/config.json` holds a pick's arch, teacher and task; distilling writes "
        "`rank<k>/student.safetensors` next to it.",
        "",
    ]
    return "\n".join(lines)


def plot_pareto(path: str | Path, record: dict, candidates: Sequence[dict]) -> Path:
    """Predicted accuracy vs p50 latency: every scored student, the front, the budget line, the picks."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    fig = Figure(figsize=(8, 5.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    lat = [c["latency_ms"] for c in candidates]
    acc = [c["predicted_acc"] for c in candidates]
    ax.scatter(lat, acc, s=6, c="#9aa5b1", alpha=0.6, linewidths=0, label=f"scored ({len(candidates):,})")
    front = sorted((c for c in candidates if c.get("on_front")), key=lambda c: c["latency_ms"])
    if front:
        ax.step([c["latency_ms"] for c in front], [c["predicted_acc"] for c in front], where="post",
                color="#d62728", lw=1.4, marker="o", ms=3, label=f"Pareto front ({len(front)})")
    budget = record["budget_ms"]
    ax.axvline(budget, color="#1f77b4", ls="--", lw=1.2, label=f"budget {budget:.3g} ms")
    t_ms = record["teacher"]["latency_ms"]
    if t_ms <= max([budget, *lat]) * 1.5:
        ax.axvline(t_ms, color="#555555", ls=":", lw=1.0, label=f"teacher {t_ms:.3f} ms")
    # picks cluster near the budget; label them in a column in the empty upper left (nothing there is both
    # fast and accurate), each with a thin line to its point
    for j, p in enumerate(record["top"]):
        ax.scatter([p["latency_ms"]], [p["predicted_acc"]], s=40, facecolors="none", edgecolors="black", lw=1.2,
                   zorder=3)
        ax.annotate(f"#{p['rank']} {p['arch_key']}", (p["latency_ms"], p["predicted_acc"]),
                    xytext=(0.02, 0.95 - 0.055 * j), textcoords="axes fraction", fontsize=7, family="monospace",
                    va="center", arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "#444444", "alpha": 0.6})
    ax.set_xlabel(f"latency p50 on {record['device']} (ms, from the measured table)")
    ax.set_ylabel("predicted accuracy after KD (%)")
    ax.set_title(f"{record['id']}: {record['evaluated']:,} students, {record['algo']}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path

