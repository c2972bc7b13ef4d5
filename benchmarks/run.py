"""Run benchmarks and assemble BENCHMARKS.md.

    python benchmarks/run.py                 # run every bench_*.py, then assemble
    python benchmarks/run.py teacher         # run bench_teacher.py only, then assemble
    python benchmarks/run.py --assemble      # only assemble existing fragments
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.common import RESULTS  # noqa: E402

ORDER = ["teacher", "latency", "fewshot", "fewshot_one_job", "fewshot_one_job_random", "fewshot_transfer_ab",
         "fewshot_rounds_ab", "fewshot_resolution_term", "fewshot_one_job_amd", "fewshot_spin",
         "fewshot_normalize", "fewshot_worksplit", "fewshot_stage", "fewshot_ceiling", "threads2_full",
         "latency_stability", "latency_reassemble", "latency_stability_ab", "timing",
         "distill", "threads",
         "metadb", "predictor", "predictor_cv", "predictor_bands", "predictor_v2_cv", "predictor_v2_cv_multi",
         "predictor_latency_bands", "predictor_latency_bands_s9", "predictor_latency_bands_s8", "predictor_pertask",
         "predictor_kshot_latency", "refine", "refine_variants", "refine_cost", "refine_seeds", "refine_signals",
         "search", "search_effort", "head_to_head_v4", "head_to_head_v3", "head_to_head", "head_to_head_v1", "export"]


def _as_section(text: str) -> str:
    """Fragments written with a top-level ``#`` title become ``##`` sections (headings shifted one level)."""
    if not text.startswith("# "):
        return text
    return "\n".join("#" + line if line.startswith("#") else line for line in text.splitlines()) + "\n"


def assemble() -> Path:
    fragments = sorted(RESULTS.glob("*.md"), key=lambda p: (ORDER.index(p.stem) if p.stem in ORDER else 99, p.stem))
    parts = ["# dass-edge benchmarks\n",
             "Figures measured by the scripts in `benchmarks/` (each section names its command, machine and date).",
             "Ratios are measured side by side in one run; absolute times on this shared 2-core machine vary by"
             " ~9% run to run.\n"]
    parts += [_as_section(p.read_text()) for p in fragments]
    out = HERE.parent / "BENCHMARKS.md"
    out.write_text("\n".join(parts))
    return out


def main(argv: list[str]) -> None:
    if "--assemble" not in argv:
        names = argv or [p.stem.removeprefix("bench_") for p in sorted(HERE.glob("bench_*.py"))]
        for name in names:
            sys.argv = [f"bench_{name}.py"]  # each script's own defaults, not this runner's arguments
            importlib.import_module(f"benchmarks.bench_{name}").main()
    print(f"wrote {assemble()}")


if __name__ == "__main__":
    main(sys.argv[1:])
