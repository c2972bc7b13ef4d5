"""Small I/O helpers: atomic writes, all-or-nothing output folders and checksums, so a killed job never
leaves half a file."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from dass_edge.errors import DassEdgeError
from dass_edge.validate import check_finite_record

__all__ = ["StagedOutput", "atomic_write", "atomic_write_json", "file_sha256", "ensure_writable_dir", "umask"]


def ensure_writable_dir(path: Path) -> Path:
    """Create ``path`` (and parents) or raise a one-line error saying why it cannot be used."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DassEdgeError(f"cannot create output folder {path}: {e.strerror}; choose another location") from None
    if not os.access(path, os.W_OK):
        raise DassEdgeError(f"output folder {path} is not writable; choose another location")
    return path


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it into place."""
    path = Path(path)
    if path.is_dir():
        raise DassEdgeError(f"{path} is a folder; give a file name to write")
    ensure_writable_dir(path.parent if str(path.parent) else Path("."))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def umask() -> int:
    """The process umask (read without changing it for longer than the call)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: str | Path, data: object) -> Path:
    """Write ``data`` as JSON; NaN/infinity are refused (they are not JSON, and mean a run went wrong)."""
    check_finite_record(data, str(path))
    text = json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"
    return atomic_write(path, lambda p: p.write_text(text))


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class StagedOutput:
    """All-or-nothing output: write into a hidden staging folder, then move everything into place at the end.

    ``with StagedOutput(out) as stage:`` write to ``stage.path(name)``, then either ``stage.commit(names)``
    (move those files into ``out``, which may hold other files: exports) or, with ``whole=True``,
    ``stage.commit_folder()`` (rename the staging folder itself to ``out``: run folders, which appear
    complete or not at all). A failure or interruption removes the staging folder, any file already
    moved, and the parent folders this writer created.

    Args:
        out_dir: the output folder.
        whole: stage next to ``out_dir`` (it must not exist yet, or be empty) instead of inside it.
        what: how messages name the folder (``output folder``, ``run folder``).

    Raises:
        DassEdgeError: the output folder cannot be created or written.
    """

    def __init__(self, out_dir: str | Path, whole: bool = False, what: str = "output folder") -> None:
        self.out_dir, self.whole, self.what = Path(out_dir), whole, what
        self._created: list[Path] = []
        self._tmp: Path | None = None
        self.committed: list[Path] = []

    def __enter__(self) -> StagedOutput:
        out = self.out_dir
        if out.exists() and not out.is_dir():
            raise DassEdgeError(f"output path {out} is a file, not a folder; choose another --out")
        home = out.parent if self.whole else out
        self._created = [p for p in [home, *home.parents] if not p.exists()]  # deepest first
        try:
            if self.whole:
                home.mkdir(parents=True, exist_ok=True)
            else:
                ensure_writable_dir(home)
            prefix = f".{out.name}.staging-" if self.whole else ".export-"
            self._tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=home))
        except OSError as e:
            self._remove_created()
            raise DassEdgeError(f"cannot write the {self.what} {out}: {e.strerror}; choose another --out") from None
        except DassEdgeError:
            self._remove_created()
            raise
        return self

    def path(self, name: str) -> Path:
        """Where to write ``name`` (a relative path) before the commit."""
        assert self._tmp is not None, "use StagedOutput in a with-block"
        return self._tmp / name

    def commit(self, names: list[str]) -> list[Path]:
        """Move the staged files into the output folder (replacing older files of the same name)."""
        for name in names:
            final = self.out_dir / name
            os.replace(self.path(name), final)
            self.committed.append(final)
        return [self.out_dir / n for n in names]

    def commit_folder(self, replace: Callable[[Path], None] | None = None) -> Path:
        """Rename the staging folder to the output folder (``whole=True``; replaces an empty folder).

        Args:
            replace: replace a non-empty output folder too: ``replace(out)`` is called first and raises to
                refuse; the old folder is set aside in a hidden holder beside it, put back if the rename
                fails, and removed once the new one is in place.

        Raises:
            DassEdgeError: the output folder appeared meanwhile and is not empty, or cannot be replaced.
        """
        assert self.whole and self._tmp is not None, "commit_folder needs StagedOutput(..., whole=True)"
        os.chmod(self._tmp, 0o777 & ~umask())  # mkdtemp makes it 0700; give the folder the usual permissions
        out = self.out_dir
        holder = None
        if replace is not None and out.is_dir() and any(out.iterdir()):
            replace(out)
            holder = Path(tempfile.mkdtemp(prefix=f".{out.name}.replaced-", dir=out.parent))
            os.rename(out, holder / out.name)
        try:
            os.rename(self._tmp, out)
        except BaseException as e:
            if holder is not None:  # put the replaced folder back
                os.rename(holder / out.name, out)
                holder.rmdir()
            if not isinstance(e, OSError):
                raise
            raise DassEdgeError(f"cannot write the {self.what} {out}: {e.strerror or e} (did it appear "
                                "meanwhile?); choose another --out") from None
        if holder is not None:
            shutil.rmtree(holder, ignore_errors=True)
        self._tmp = None
        self.committed.append(out)
        return out

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
        if exc_type is not None:
            for final in self.committed:  # a failure after a partial commit takes the moved files back out
                if final.is_dir():
                    shutil.rmtree(final, ignore_errors=True)
                else:
                    final.unlink(missing_ok=True)
            self._remove_created()

    def _remove_created(self) -> None:
        for folder in self._created:
            try:
                folder.rmdir()
            except OSError:
                break
