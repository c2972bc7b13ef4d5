"""Where packaged data lives, for both a source checkout (editable install) and a wheel install."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["asset_path", "profiles_dir", "tables_dir"]


def _package_dir(package: str) -> Path:
    return Path(str(resources.files(package)))


def profiles_dir() -> Path:
    return _package_dir("dass_edge.profiles")


def tables_dir() -> Path:
    return _package_dir("dass_edge.latency_tables")


def asset_path(name: str) -> Path:
    return _package_dir("dass_edge.assets") / name
