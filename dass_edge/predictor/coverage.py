"""What a predictor has seen: the stems, resolutions and teacher depths of its meta-training database.

A predictor scores any student of any teacher, but its estimates only carry evidence inside what it was
meta-trained on. A search on a teacher outside that (an ImageNet stem when the database held only small
stems, 224 px when it held 16 px) is an extrapolation, and the user should be told so rather than shown
numbers that look as certain as the rest.
"""

from __future__ import annotations

from dass_edge.spec import ModelSpec

__all__ = ["db_coverage", "extrapolation_notes"]


def db_coverage(rows: list[dict]) -> dict:
    """``{"stems": [...], "resolutions": [...], "max_depth": d, "rows": n}`` of a database's rows."""
    stems = sorted({(r.get("teacher_spec") or {}).get("stem", "small") for r in rows})
    resolutions = sorted({int(r["resolution"]) for r in rows if r.get("resolution")})
    depths = [max((r.get("teacher_spec") or {}).get("depths") or [0]) for r in rows]
    return {"stems": stems, "resolutions": resolutions, "max_depth": max(depths, default=0), "rows": len(rows)}


def extrapolation_notes(coverage: dict | None, spec: ModelSpec) -> list[str]:
    """One sentence per way ``spec`` (the search's teacher) lies outside ``coverage``; empty if inside."""
    if not coverage or not coverage.get("rows"):
        return []
    notes = []
    if spec.stem not in coverage["stems"]:
        notes.append(f"the predictor was meta-trained on {'/'.join(coverage['stems'])}-stem teachers only; this "
                     f"teacher has a {spec.stem} stem, so its accuracy estimates are an extrapolation")
    res = coverage["resolutions"]
    if res and spec.resolution not in res:
        notes.append(f"the predictor was meta-trained at {', '.join(map(str, res))} px; this search runs at "
                     f"{spec.resolution} px, so its accuracy estimates are an extrapolation")
    if coverage.get("max_depth") and max(spec.depths) > coverage["max_depth"]:
        notes.append(f"this teacher has stages of {max(spec.depths)} blocks; the predictor saw at most "
                     f"{coverage['max_depth']}, so deeper students are an extrapolation")
    return notes
