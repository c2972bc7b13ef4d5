"""A latency budget as the user gives it: absolute milliseconds, or relative to the teacher's latency.

``--latency-ms 0.35`` is a budget on one device's table and means different things on different CPUs;
``--latency-ms 50%`` and ``--speedup 2`` both mean "half the teacher's latency on the device searched",
which binds and is feasible on any CPU. The relative forms are resolved once the device's table is
known (:meth:`Budget.resolve`). Parsing imports nothing heavy, so the CLI checks the flag before
loading anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dass_edge.errors import DassEdgeError

__all__ = ["Budget", "parse_budget"]

_HOW = "give --latency-ms X (ms on the device), --latency-ms 50% (of the teacher's latency) or --speedup 2"


@dataclass(frozen=True)
class Budget:
    """``value`` ms (``relative=False``) or ``value`` times the teacher's latency (``relative=True``);
    ``text`` is how it was given (``0.35``, ``50%``, ``--speedup 2``)."""

    value: float
    relative: bool
    text: str

    def resolve(self, teacher_ms: float) -> float:
        """The budget in ms, given the teacher's latency on the device searched."""
        return self.value * teacher_ms if self.relative else self.value

    def describe(self, teacher_ms: float) -> str:
        """``0.35 ms`` or ``0.350 ms (50% of the teacher's 0.699 ms)``."""
        if not self.relative:
            return f"{self.value:g} ms"
        share = f"{self.text} faster than" if self.text.endswith("x") else f"{self.text} of"
        return f"{self.resolve(teacher_ms):.3f} ms ({share} the teacher's {teacher_ms:.3f} ms)"

    def raise_to(self, fastest_ms: float, teacher_ms: float) -> str:
        """How to change the flag so that a student of ``fastest_ms`` fits (for the infeasible error)."""
        if not self.relative:
            return f"raise --latency-ms to at least {math.ceil(fastest_ms * 1000) / 1000:g}"
        share = fastest_ms / teacher_ms
        if self.text.endswith("x"):
            return f"lower --speedup to at most {math.floor(1 / share * 100) / 100:g}"
        return f"raise --latency-ms to at least {math.ceil(share * 1000) / 10:g}%"

    def to_dict(self, teacher_ms: float) -> dict:
        return {"given": self.text, "relative": self.relative, "value": self.value,
                "ms": self.resolve(teacher_ms), "teacher_ms": teacher_ms, "text": self.describe(teacher_ms)}


def _positive(value: float, flag: str, given: object) -> float:
    if not math.isfinite(value) or value <= 0:
        raise DassEdgeError(f"{flag} must be a positive number, got {given}; {_HOW}")
    return value


def parse_budget(latency_ms: str | float | Budget | None = None, speedup: float | str | None = None) -> Budget:
    """Read ``--latency-ms`` (``0.35`` ms or ``50%`` of the teacher) or ``--speedup`` (``2``: twice as fast
    as the teacher); exactly one of them.

    Raises:
        DassEdgeError: neither or both given, or a value that is not a positive number (or percentage).
    """
    if isinstance(latency_ms, Budget):
        if speedup is not None:
            raise DassEdgeError(f"give either --latency-ms or --speedup, not both; {_HOW}")
        return latency_ms
    if latency_ms is None and speedup is None:
        raise DassEdgeError(f"no latency budget; {_HOW}")
    if latency_ms is not None and speedup is not None:
        raise DassEdgeError(f"give either --latency-ms or --speedup, not both; {_HOW}")
    if speedup is not None:
        try:
            x = _positive(float(speedup), "--speedup", speedup)
        except (TypeError, ValueError):
            raise DassEdgeError(f"--speedup must be a number, got {speedup!r}; {_HOW}") from None
        return Budget(1.0 / x, True, f"{x:g}x")
    if isinstance(latency_ms, bool):
        raise DassEdgeError(f"--latency-ms must be a positive number of milliseconds, got {latency_ms}")
    text = str(latency_ms).strip()
    relative = text.endswith("%")
    try:
        value = float(text[:-1] if relative else text)
    except ValueError:
        raise DassEdgeError(f"--latency-ms must be milliseconds (0.35) or a share of the teacher's latency (50%), "
                            f"got {latency_ms!r}") from None
    if relative:
        _positive(value, "--latency-ms", text)
        return Budget(value / 100, True, f"{value:g}%")
    if not math.isfinite(value) or value <= 0:
        raise DassEdgeError(f"--latency-ms must be a positive number of milliseconds, got {latency_ms}")
    return Budget(value, False, f"{value:g}")
