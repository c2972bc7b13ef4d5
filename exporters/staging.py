"""All-or-nothing output: artifacts are written into a hidden staging folder and moved into place at the end.

A failed or interrupted export leaves no half-written artifact behind: the staging folder is
removed, and so is the output folder when this export created it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from dass_edge.errors import DassEdgeError
from dass_edge.io import ensure_writable_dir

__all__ = ["StagedOutput"]


class StagedOutput:
    """``with StagedOutput(out) as stage:`` write to ``stage.path(name)``, then ``stage.commit(names)``.

    Raises:
        DassEdgeError: the output folder cannot be created or written.
    """

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)
        self._created: list[Path] = []
        self._tmp: Path | None = None
        self.committed: list[Path] = []

    def __enter__(self) -> StagedOutput:
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise DassEdgeError(f"output path {self.out_dir} is a file, not a folder; choose another --out")
        missing = [p for p in [self.out_dir, *self.out_dir.parents] if not p.exists()]
        ensure_writable_dir(self.out_dir)
        self._created = missing  # deepest first, removed on failure if still empty
        try:
            self._tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=self.out_dir))
        except OSError as e:
            self._remove_created()
            raise DassEdgeError(
                f"output folder {self.out_dir} is not writable ({e.strerror}); choose another --out"
            ) from None
        return self

    def path(self, name: str) -> Path:
        """Where to write ``name`` during the export."""
        assert self._tmp is not None, "use StagedOutput in a with-block"
        return self._tmp / name

    def commit(self, names: list[str]) -> list[Path]:
        """Move the staged files into the output folder (replacing older files of the same name)."""
        for name in names:
            final = self.out_dir / name
            os.replace(self.path(name), final)
            self.committed.append(final)
        return [self.out_dir / n for n in names]

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
        if exc_type is not None:
            for final in self.committed:  # a failure after a partial commit takes the moved files back out
                final.unlink(missing_ok=True)
            self._remove_created()

    def _remove_created(self) -> None:
        for folder in self._created:
            try:
                folder.rmdir()
            except OSError:
                break
