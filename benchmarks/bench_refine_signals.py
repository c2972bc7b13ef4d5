"""Which signal of a short KD run ranks the refinement's finalists best → results/refine_signals.md.

The fifth rule's measurement (``bench_refine_seeds.py``) found that the refinement misorders finalists because
of training noise: two seeds of one finalist differ by 1.5-1.7 points at epochs 1-3 on the same validation
images, about the gaps between finalists. This bench trains the same finalists once more (seed 2, the first 4
epochs of the recipe, the search's own ``distill(stop_after=...)``) and records, after each epoch, several
signals on the validation images that could rank them with less noise at no extra KD cost: top-1 accuracy
(what ships), the mean true-class probability, the true-class log-likelihood, the KL divergence to the
teacher, and the accuracy of moving averages of the weights. The label stays seed 0's (the database's), so every
ranking here is an independent run, as a user's refinement is. The choice between signals was fixed before
any run: the seventh rule in ``results/refine_rule.txt``, applied by :func:`verdict`.

    OMP_NUM_THREADS=1 python benchmarks/bench_refine_signals.py run --shard 1/2   # and 2/2 on the other core
    python benchmarks/bench_refine_signals.py report

The plan (finalists, budgets, predictor fitted leave-one-task-out) is ``bench_refine_seeds.py``'s.
``run`` appends one fsynced JSON line per finalist to ``refine_signals.jsonl``; a finalist cut by kill -9 is
trained again from its start (its moving averages cannot be resumed), finished ones are skipped.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_refine_seeds import PLAN, _db_rows, read_log, regrets, shard_todo  # noqa: E402
from benchmarks.bench_refine_seeds import _logged as seed1_curves  # noqa: E402
from benchmarks.common import RESULTS, task_bootstrap, write_fragment  # noqa: E402

LOG = RESULTS / "refine_signals.jsonl"
SEED = 2
MAX_EPOCHS = 4
#: Signal -> +1 when higher ranks first, -1 when lower does (the seventh rule's list, in its order).
SIGNALS = {"acc": 1, "soft": 1, "nll": -1, "kl": -1, "ema_q": 1, "ema_1": 1, "ema_q_soft": 1}
#: Weight-average horizons in epochs of steps.
EMA_HORIZONS = {"ema_q": 0.25, "ema_1": 1.0}
REFERENCE = ("acc", 3)


class WeightAverage:
    """An exponential moving average of a model's weights and BN statistics (integer buffers copied), decay
    warmed up as ``min(decay, (1 + n) / (10 + n))`` so early steps do not pin it to the remapped start."""

    def __init__(self, horizon_steps: float) -> None:
        self.decay = 1.0 - 1.0 / max(1.0, horizon_steps)
        self.model = None
        self.n = 0

    def update(self, model) -> None:
        import torch

        if self.model is None:
            self.model = copy.deepcopy(model).eval()
            self.n = 1
            return
        d = min(self.decay, (1 + self.n) / (10 + self.n))
        self.n += 1
        with torch.no_grad():
            for avg, cur in zip(self.model.state_dict().values(), model.state_dict().values()):
                if avg.is_floating_point():
                    avg.mul_(d).add_(cur.detach(), alpha=1 - d)
                else:
                    avg.copy_(cur)


def val_outputs(model, data, mean, std):
    """Logits on the validation images (eval mode, in split order) and the labels."""
    import torch

    from dass_edge.data.task import iterate_batches

    model.eval()
    logits, labels = [], []
    with torch.no_grad():
        for x, y, _ in iterate_batches(data.val, 512, mean, std):
            logits.append(model(x))
            labels.append(y)
    return torch.cat(logits), torch.cat(labels)


def signal_values(logits, labels, teacher_logp) -> dict[str, float]:
    """Top-1 accuracy, mean true-class probability (percent), true-class NLL and KL(teacher || student)."""
    import torch.nn.functional as F

    logp = F.log_softmax(logits.double(), 1)
    true = logp.gather(1, labels[:, None]).squeeze(1)
    kl = (teacher_logp.exp() * (teacher_logp - logp)).sum(1)
    return {"acc": 100.0 * float((logits.argmax(1) == labels).double().mean()),
            "soft": 100.0 * float(true.exp().mean()), "nll": float(-true.mean()), "kl": float(kl.mean())}


def observers(data, mean, std, teacher_logp, steps_per_epoch: int):
    """``(after_step, epoch_metrics)`` for :func:`distill`: the weight averages and every signal per epoch."""
    averages = {name: WeightAverage(h * steps_per_epoch) for name, h in EMA_HORIZONS.items()}

    def after_step(model) -> None:
        for a in averages.values():
            a.update(model)

    def epoch_metrics(model) -> dict:
        out = signal_values(*val_outputs(model, data, mean, std), teacher_logp)
        for name, a in averages.items():
            s = signal_values(*val_outputs(a.model, data, mean, std), teacher_logp)
            out[name] = s["acc"]
            if name == "ema_q":
                out["ema_q_soft"] = s["soft"]
        return {f"sig_{k}": v for k, v in out.items()}

    return after_step, epoch_metrics


def logged() -> dict:
    """``{(task, arch_key): {signal: per-epoch values}}`` (a line cut by kill -9 is left out)."""
    return read_log(LOG, "signals")


def run(shard: tuple[int, int], threads: int, work: Path) -> None:
    """Distill this shard's planned finalists that are not in the log yet (seed 2, first 4 epochs, every signal)."""
    import torch
    import torch.nn.functional as F

    from dass_edge.metadb.store import append_row
    from dass_edge.space import Arch
    from dass_edge.training.distill import DB_RECIPE, KDConfig, distill

    work.mkdir(parents=True, exist_ok=True)
    teacher_logp: dict = {}
    for i, count, j, teacher, data in shard_todo(shard, logged(), threads):
        if j["task"] not in teacher_logp:  # the teacher's answers on the validation images, once per task
            teacher_logp.clear()
            t_logits, _ = val_outputs(teacher, data, teacher.spec.mean, teacher.spec.std)
            teacher_logp[j["task"]] = F.log_softmax(t_logits.double(), 1)
        t0 = time.perf_counter()
        torch.manual_seed(SEED)
        steps = -(-len(data.train) // DB_RECIPE.batch_size)
        after_step, epoch_metrics = observers(data, teacher.spec.mean, teacher.spec.std, teacher_logp[j["task"]],
                                              steps)
        result = distill(teacher, Arch.from_dict(j["arch"]), data, KDConfig().with_seed(SEED), stop_after=MAX_EPOCHS,
                         cache_dir=work / "teacher_cache", teacher_sha256=j["teacher_sha256"],
                         after_step=after_step, epoch_metrics=epoch_metrics)
        signals = {s: [round(float(h[f"sig_{s}"]), 5) for h in result.history] for s in SIGNALS}
        if any(len(v) != MAX_EPOCHS or not np.all(np.isfinite(v)) for v in signals.values()):
            raise SystemExit(f"{j['task']} {j['arch_key']}: unexpected signals {signals}")
        if abs(signals["acc"][-1] - result.history[-1]["val_acc"]) > 1e-4:  # stored to 5 decimals
            raise SystemExit(f"{j['task']} {j['arch_key']}: the signal's accuracy disagrees with the loop's")
        rec = {"task": j["task"], "arch_key": j["arch_key"], "seed": SEED, "signals": signals,
               "seconds": round(time.perf_counter() - t0, 1), "threads": threads}
        append_row(LOG, rec)  # one whole line per finalist, on disk before the next starts (shards share the log)
        print(f"[{i}/{count}] {j['task']} {j['arch_key']}: acc {signals['acc']} ema_q {signals['ema_q']} "
              f"({rec['seconds']} s)", flush=True)


def candidates() -> list[tuple[str, str, int]]:
    """The seventh rule's candidates ``(policy, signal, E)``, in its order; ``two_seeds`` is V6 on seed 1 + 2."""
    return [("V0", s, e) for e in (3, 4) for s in SIGNALS] + [("V6", "two_seeds", 3)]


def cost(c: tuple[str, str, int]) -> int:
    """KD epochs: V0's 4 finalists x E, or V6's 2 finalists x 2 seeds x E."""
    return 4 * c[2]


def curves_for(signal: str, sig: dict, seed1: dict) -> dict:
    """``{(task, key): per-epoch score}``, higher first, for one signal (or seed 1 and 2's mean accuracy)."""
    if signal == "two_seeds":
        return {k: list((np.asarray(v["acc"][:3]) + np.asarray(seed1[k][:3])) / 2)
                for k, v in sig.items() if k in seed1}
    return {k: list(SIGNALS[signal] * np.asarray(v[signal])) for k, v in sig.items()}


def verdict(table: dict, tasks: list[str], n_tasks: int) -> str:
    """The seventh rule applied to ``{candidate: {task: regret}}``."""
    if len(tasks) < n_tasks:
        return f"Partial ({len(tasks)} of {n_tasks} tasks): by the rule, no verdict until every task is in."
    ref = ("V0",) + REFERENCE
    order = candidates()
    mean = {c: float(np.mean([table[c][t] for t in tasks])) for c in order}
    passed = []
    for c in order:
        if c == ref:
            continue
        d = np.array([table[c][t] - table[ref][t] for t in tasks])
        lo, hi = task_bootstrap(d)
        bar = 0.10 if cost(c) <= cost(ref) else 0.20
        if d.mean() <= -bar and hi < 0:
            passed.append(c)
    if not passed:
        return ("Verdict: no candidate passes the seventh rule's bar; the shipped ranking (top-1 accuracy at E = 3) "
                "stays.")
    best = min(mean[c] for c in passed)
    win = min((c for c in passed if mean[c] <= best + 0.05), key=lambda c: (cost(c), order.index(c)))
    d = np.array([table[win][t] - table[ref][t] for t in tasks])
    lo, hi = task_bootstrap(d)
    return (f"Verdict: {win[0]} ranked by {win[1]} at E = {win[2]} ({cost(win)} KD epochs) replaces the shipped "
            f"ranking: regret {mean[win]:.2f} vs {mean[ref]:.2f} ({d.mean():+.2f} [{lo:+.2f}, {hi:+.2f}]).")


def regret_table(doc: dict, sig: dict, seed1: dict, labels: dict) -> dict:
    out = {}
    for c in candidates():
        policy, signal, e = c
        out[c] = regrets(doc, curves_for(signal, sig, seed1), labels, policy, e)
    return out


def report() -> str:
    doc = json.loads(PLAN.read_text())
    rows, = _db_rows(doc["dbs"])
    labels = {k: float(r["val_acc"]) for k, r in rows.items()}
    sig, seed1 = logged(), seed1_curves()
    table = regret_table(doc, sig, seed1, labels)
    complete = sorted(set.intersection(*(set(v) for v in table.values())))
    if not complete:
        return "No task has every finalist trained with seed 2 yet."
    ref = table[("V0",) + REFERENCE]
    s1 = regrets(doc, seed1, labels, "V0", 3)
    lines = [f"Meta-training tasks with every finalist trained with seed 2: {len(complete)} of {len(doc['tasks'])}. "
             "Label: seed 0's validation accuracy (the database's); regret in points, mean of 4 FLOPs-budget "
             "quantiles; every ranking from a run independent of the label. The choice: the seventh rule in "
             "`benchmarks/results/refine_rule.txt`, written before any run; its verdict is under the table.\n",
             "| policy | ranked by | E | KD epochs | mean regret "
             "| vs V0 by seed 2's accuracy at E = 3 [95% task bootstrap] |",
             "|---|---|---|---|---|---|"]
    for c in candidates():
        got = np.array([table[c][t] for t in complete])
        d = np.array([table[c][t] - ref[t] for t in complete])
        lo, hi = task_bootstrap(d)
        mark = " (shipped)" if c == ("V0",) + REFERENCE else ""
        lines.append(f"| {c[0]} | {c[1]}{mark} | {c[2]} | {cost(c)} | {got.mean():.2f} | {d.mean():+.2f} "
                     f"[{lo:+.2f}, {hi:+.2f}] |")
    both = {k: list((np.asarray(v["acc"]) + np.asarray(seed1[k][:MAX_EPOCHS])) / 2) for k, v in sig.items()
            if k in seed1}
    two = {e: regrets(doc, both, labels, "V0", e) for e in (2, 3, 4)}
    lines += ["", f"The shipped ranking on seed 1's run (the fifth rule's measurement, same tasks): "
              f"{np.mean([s1[t] for t in complete]):.2f}. Information, not a candidate (twice the cost): V0's 4 "
              "finalists ranked by the mean of seed 1's and seed 2's accuracy at E = "
              + ", ".join(f"{e}: {np.mean([two[e][t] for t in complete]):.2f} ({8 * e} epochs)" for e in two) + ".", "",
              verdict(table, complete, len(doc["tasks"])), "",
              "How well each signal at epoch 3 orders a task's finalists like the label (Spearman within a task, "
              "mean over the tasks; the last row: seed 1's accuracy, the fifth rule's run):", "",
              agreement(sig, seed1, labels)]
    return "\n".join(lines)


def agreement(sig: dict, seed1: dict, labels: dict) -> str:
    """Per signal at epoch 3: within-task Spearman with the label (seed 0's best accuracy)."""
    from scipy.stats import spearmanr

    tasks = sorted({t for t, _ in sig})
    lines = ["| signal at epoch 3 | Spearman with the label (mean over tasks) |", "|---|---|"]
    for s, sign in SIGNALS.items():
        rhos = []
        for t in tasks:
            keys = [k for k in sig if k[0] == t]
            if len(keys) >= 5:
                rho = spearmanr([sign * sig[k][s][2] for k in keys], [labels[k] for k in keys])[0]
                if np.isfinite(rho):
                    rhos.append(rho)
        lines.append(f"| {s} | {np.mean(rhos):.3f} ({len(rhos)} tasks) |")
    rhos = []
    for t in tasks:
        keys = [k for k in sig if k[0] == t and k in seed1]
        if len(keys) >= 5:
            rhos.append(spearmanr([seed1[k][2] for k in keys], [labels[k] for k in keys])[0])
    lines.append(f"| acc, seed 1 | {np.nanmean(rhos):.3f} ({len(rhos)} tasks) |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--shard", default="1/1", help="k/n: every n-th finalist from the k-th")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "refine_signals")
    sub.add_parser("report")
    args = ap.parse_args()
    if args.cmd == "run":
        k, n = (int(x) for x in args.shard.split("/"))
        run((k, n), args.threads, args.work)
    else:
        body = report()
        print(body)
        write_fragment("refine_signals",
                       "Which short-run signal ranks the refinement's finalists (meta-training tasks)",
                       "OMP_NUM_THREADS=1 python benchmarks/bench_refine_signals.py run --shard k/2, k = 1, 2 in "
                       "parallel; python benchmarks/bench_refine_signals.py report", body)


if __name__ == "__main__":
    main()
