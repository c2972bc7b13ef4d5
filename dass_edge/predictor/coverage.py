"""What a predictor has seen: the stems, resolutions and teacher depths of its meta-training database.

A predictor scores any student of any teacher, but its estimates only carry evidence inside what it was
meta-trained on. A search on a teacher outside that (an ImageNet stem when the database held only small
stems, 224 px when it held 16 px) is an extrapolation, and the user should be told so rather than shown
numbers that look as certain as the rest.

``meta train`` records the coverage of its meta-training rows (held-out rows never reach training) in
the predictor's metadata; :func:`predictor_coverage` reads it from there, and derives it from the
shipped database only for the shipped predictor when that predictor predates the record.
"""

from __future__ import annotations

from pathlib import Path

from dass_edge.errors import DassEdgeError
from dass_edge.spec import ModelSpec

__all__ = ["db_coverage", "extrapolation_notes", "predictor_coverage", "training_coverage"]


def _teacher(row: dict) -> dict:
    spec = row.get("teacher_spec") or {}
    return {"stem": spec.get("stem", "small"), "resolution": int(row["resolution"]) if row.get("resolution") else None,
            "depths": list(spec.get("depths") or []), "widths": list(spec.get("widths") or [])}


def db_coverage(rows: list[dict]) -> dict:
    """``{"stems": [...], "resolutions": [...], "max_depth": d, "teachers": [...], "rows": n}`` of rows:
    ``teachers`` lists each distinct teacher shape (stem, resolution, depths, widths) once."""
    stems = sorted({(r.get("teacher_spec") or {}).get("stem", "small") for r in rows})
    resolutions = sorted({int(r["resolution"]) for r in rows if r.get("resolution")})
    depths = [max((r.get("teacher_spec") or {}).get("depths") or [0]) for r in rows]
    shapes = {repr(t): t for t in map(_teacher, rows)}
    return {"stems": stems, "resolutions": resolutions, "max_depth": max(depths, default=0),
            "teachers": [shapes[k] for k in sorted(shapes)], "rows": len(rows)}


def training_coverage(rows: list[dict]) -> dict:
    """The coverage of the rows a predictor is meta-trained on: every row not held out."""
    return db_coverage([r for r in rows if not r.get("heldout")])


def predictor_coverage(path: str | Path | None = None) -> dict | None:
    """What the predictor at ``path`` (default: the shipped one) was meta-trained on: the ``coverage``
    its metadata records, else, for the shipped predictor only, the shipped database's training rows;
    None when unknown (a predictor without the record, or no predictor file)."""
    from dass_edge.predictor.store import default_predictor_path, read_predictor_meta

    path = Path(path) if path is not None else default_predictor_path()
    if not path.is_file():
        return None
    try:
        meta = read_predictor_meta(path)
    except DassEdgeError:
        return None
    if meta.get("coverage") is not None:
        return meta["coverage"]
    if path.resolve() != default_predictor_path().resolve():
        return None
    from dass_edge.metadb import read_rows
    from dass_edge.resources import asset_path

    return training_coverage(read_rows(asset_path("metadb.jsonl")))


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
