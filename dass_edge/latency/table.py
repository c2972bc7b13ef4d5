"""The latency lookup table: JSON format, validation on load, and fast prediction.

A table holds one measured entry per stem/block/head configuration of a search space (overhead per
call already removed), the measured per-call overhead, a correction fitted on whole students, the
fidelity of the corrected prediction, and the provenance of the measurement. ``predict`` turns a
:class:`~dass_edge.spec.ModelSpec` into a corrected median and p90 with one dict lookup per block.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from dass_edge.errors import DassEdgeError
from dass_edge.latency.entries import Entry, entry_lookup_key, space_entries, spec_keys
from dass_edge.spec import ModelSpec

__all__ = ["FEATURES", "FORMAT", "LUT_STATISTIC", "VERSION", "LatencyTable", "validate_table"]

FORMAT, VERSION = "dass-edge/latency-table", 1
#: The entry statistic that is added up (see :mod:`dass_edge.latency.fidelity` for why not the median).
LUT_STATISTIC = "p25_ms"
_LUT_STATISTICS = ("p25_ms", "p50_ms")
#: Inputs of the correction: the LUT sum (overhead + net entries), the weights' size, a constant.
FEATURES = ("lut_ms", "weights_mb", "const")
_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}
_STAT_KEYS = ("p25_ms", "p50_ms", "p90_ms", "mean_ms", "std_ms")


class _Invalid(Exception):
    pass


def _num(d: dict, key: str, where: str, minimum: float | None = 0.0) -> float:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _Invalid(f"{where}.{key} must be a finite number, got {v!r}")
    if minimum is not None and v < minimum:
        raise _Invalid(f"{where}.{key} must be >= {minimum}, got {v}")
    return float(v)


def _obj(d: Any, key: str, where: str) -> dict:
    v = d.get(key) if isinstance(d, dict) else None
    if not isinstance(v, dict):
        raise _Invalid(f"{where}.{key} must be an object")
    return v


def _validate(data: Any) -> None:
    if not isinstance(data, dict):
        raise _Invalid("top level must be an object")
    if data.get("format") != FORMAT:
        raise _Invalid(f"format must be {FORMAT!r}, got {data.get('format')!r}")
    if data.get("version") != VERSION:
        raise _Invalid(f"version {data.get('version')!r} is not supported (this dass-edge reads {VERSION})")
    for key in ("device", "backend", "precision"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise _Invalid(f"{key} must be a non-empty string")
    if data["precision"] not in _BYTES:
        raise _Invalid(f"precision must be one of {sorted(_BYTES)}")
    for key in ("batch", "threads", "resolution"):
        if isinstance(data.get(key), bool) or not isinstance(data.get(key), int) or data[key] < 1:
            raise _Invalid(f"{key} must be a positive integer")
    if data.get("lut_statistic") not in _LUT_STATISTICS:
        raise _Invalid(f"lut_statistic must be one of {list(_LUT_STATISTICS)}")
    space = _obj(data, "space", "table")
    if not isinstance(space.get("fixed_last_stage"), bool):
        raise _Invalid("space.fixed_last_stage must be true or false")
    try:
        ModelSpec.from_dict(_obj(space, "teacher", "space"))
    except DassEdgeError as e:
        raise _Invalid(f"space.teacher: {e}") from None
    prov = _obj(data, "provenance", "table")
    for key in ("date", "measured_on"):
        if not isinstance(prov.get(key), str):
            raise _Invalid(f"provenance.{key} must be a string")
    over = _obj(data, "overhead", "table")
    for key in _STAT_KEYS:
        _num(over, key, "overhead")
    entries = _obj(data, "entries", "table")
    if not entries:
        raise _Invalid("entries is empty")
    for key, e in entries.items():
        if not isinstance(e, dict):
            raise _Invalid(f"entries[{key!r}] must be an object")
        try:
            entry = Entry.from_dict(e)
        except DassEdgeError as err:
            raise _Invalid(f"entries[{key!r}]: {err}") from None
        if entry.key != key:
            raise _Invalid(f"entries[{key!r}] describes {entry.key!r}")
        for stat in (*_STAT_KEYS, "raw_p50_ms", "params"):
            _num(e, stat, f"entries[{key!r}]")
    corr = _obj(data, "correction", "table")
    feats = corr.get("features")
    if not isinstance(feats, list) or not feats or any(f not in FEATURES for f in feats):
        raise _Invalid(f"correction.features must be a non-empty list drawn from {list(FEATURES)}")
    coefs = corr.get("p50")
    if not isinstance(coefs, list) or len(coefs) != len(feats):
        raise _Invalid("correction.p50 must list one coefficient per feature")
    for i, c in enumerate(coefs):
        _num({"c": c}, "c", f"correction.p50[{i}]", minimum=None)
    _num(corr, "p90_ratio", "correction", minimum=1.0)
    fid = _obj(data, "fidelity", "table")
    if _num(fid, "students", "fidelity") > 0:
        _num(fid, "within_10pct", "fidelity")
        _num(fid, "rmspe", "fidelity")
    if fid.get("spearman") is not None:
        _num(fid, "spearman", "fidelity", minimum=-1.0)


def validate_table(data: Any, source: str = "latency table") -> dict:
    """Return ``data`` if it is a well-formed table, else raise a one-line :class:`DassEdgeError`."""
    try:
        _validate(data)
    except _Invalid as e:
        raise DassEdgeError(f"{source} is malformed: {e}; delete it and re-run dass-edge profile") from None
    return data


class LatencyTable:
    """A validated latency lookup table.

    Args:
        data: the parsed JSON document (validated here).
        path: where it was read from, if anywhere.
    """

    def __init__(self, data: dict, path: Path | None = None) -> None:
        self.data = validate_table(data, str(path) if path else "latency table")
        self.path = path
        self.batch: int = data["batch"]
        self._bytes = _BYTES[data["precision"]]
        stat = data["lut_statistic"]
        self._overhead = float(data["overhead"][stat])
        self._lookup: dict[tuple, tuple[float, float]] = {}
        for e in data["entries"].values():
            self._lookup[entry_lookup_key(Entry.from_dict(e))] = (float(e[stat]), float(e["params"]))
        corr = data["correction"]
        self._features = tuple(corr["features"])
        self._c50, self._p90_ratio = tuple(corr["p50"]), float(corr["p90_ratio"])

    # -- identity -----------------------------------------------------------------------------
    device = property(lambda self: self.data["device"])
    backend = property(lambda self: self.data["backend"])
    precision = property(lambda self: self.data["precision"])
    resolution = property(lambda self: self.data["resolution"])
    provenance = property(lambda self: self.data["provenance"])
    fidelity = property(lambda self: self.data["fidelity"])
    correction = property(lambda self: self.data["correction"])
    entries = property(lambda self: self.data["entries"])

    @property
    def teacher(self) -> ModelSpec:
        return ModelSpec.from_dict(self.data["space"]["teacher"])

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except OSError as e:
            raise DassEdgeError(f"cannot read latency table {path}: {e.strerror}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DassEdgeError(
                f"latency table {path} is not valid JSON ({e}); delete it and re-run dass-edge profile"
            ) from None
        return cls(data, path)

    # -- coverage -----------------------------------------------------------------------------
    def missing(self, space) -> list[str]:
        """Keys of ``space`` (a :class:`~dass_edge.space.SearchSpace`) this table lacks."""
        return [e.key for e in space_entries(space, self.batch) if entry_lookup_key(e) not in self._lookup]

    # -- prediction ---------------------------------------------------------------------------
    def lut_sum(self, spec: ModelSpec) -> tuple[float, float]:
        """Uncorrected sum (per-call overhead once + net entries, by ``lut_statistic``) and the weights in MB."""
        total, params = self._overhead, 0.0
        lookup = self._lookup
        try:
            for k in spec_keys(spec, self.batch):
                ms, p = lookup[k]
                total += ms
                params += p
        except KeyError as e:
            raise DassEdgeError(
                f"the {self.device} latency table ({self.path or 'in memory'}) has no entry for {e.args[0]}; it was "
                f"measured for another teacher or resolution; build one with dass-edge profile --device {self.device} "
                f"--resolution {spec.resolution} --teacher <your teacher>"
            ) from None
        return total, params * self._bytes / 1e6

    def _apply(self, lut_ms: float, weights_mb: float) -> float:
        values = {"lut_ms": lut_ms, "weights_mb": weights_mb, "const": 1.0}
        return sum(c * values[f] for c, f in zip(self._c50, self._features))

    def predict(self, spec: ModelSpec) -> dict[str, float]:
        """Corrected median and p90 latency of ``spec`` in ms (plus the uncorrected ``lut_ms``).

        Raises:
            DassEdgeError: the spec uses a configuration the table does not hold.
        """
        lut, mb = self.lut_sum(spec)
        p50 = max(self._apply(lut, mb), 0.0)
        return {"p50_ms": p50, "p90_ms": p50 * self._p90_ratio, "lut_ms": lut}

    def summary(self) -> dict[str, Any]:
        """What ``dass-edge devices`` shows about this table."""
        fid, prov = self.fidelity, self.provenance
        return {"measured_on": prov["measured_on"], "date": prov["date"], "entries": len(self.entries),
                "within_10pct": fid["within_10pct"], "rmspe": fid["rmspe"], "spearman": fid.get("spearman"),
                "students": fid["students"], "resolution": self.resolution, "precision": self.precision,
                "teacher_stages": [len(s) for s in self.teacher.stages], "path": str(self.path) if self.path else None}
