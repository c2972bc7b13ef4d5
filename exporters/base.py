"""Loader plumbing shared by the exporters (Polygraphy-style deferred callables).

A loader holds what it needs to make one thing (an ONNX file, a session, an engine) and makes it
when called. Loaders take either a value or another loader, so steps chain without running early:
``QdqFromOnnx(OnnxFromTorch(model, path), out, reader)()`` exports, then quantizes.
"""

from __future__ import annotations

import abc
import importlib
from types import ModuleType
from typing import Any, Generic, TypeVar

from dass_edge.errors import DassEdgeError

__all__ = ["BaseLoader", "lazy_import", "resolve"]

T = TypeVar("T")


class BaseLoader(abc.ABC, Generic[T]):
    """A deferred step: ``loader()`` runs :meth:`call_impl` and returns its result."""

    def __call__(self) -> T:
        return self.call_impl()

    @abc.abstractmethod
    def call_impl(self) -> T:
        """Produce the loader's value."""


def resolve(value: Any) -> Any:
    """The value itself, or what a loader makes (so steps accept either)."""
    return value() if isinstance(value, BaseLoader) else value


def lazy_import(name: str, extra: str | None = None, why: str = "") -> ModuleType:
    """Import an optional dependency only when a step needs it, with a message saying how to get it.

    Raises:
        DassEdgeError: the module is not installed (or fails to load its native libraries).
    """
    try:
        return importlib.import_module(name)
    except (ImportError, OSError) as e:
        hint = f"pip install 'dass-edge[{extra}]'" if extra else f"pip install {name}"
        reason = f" ({why})" if why else ""
        raise DassEdgeError(f"{name} is not available here{reason}: {type(e).__name__}: {e}; {hint}") from None
