"""dass-edge: hardware-aware, distillation-aware student search for edge deployment."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
