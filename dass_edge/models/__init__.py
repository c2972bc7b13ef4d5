"""The ResNet family, teacher→student remapping and checkpoints."""

from __future__ import annotations

from dass_edge.models.checkpoint import load_checkpoint, save_checkpoint
from dass_edge.models.remap import REMAP_MODES, remap
from dass_edge.models.resnet import ResNet, build_model, create_model, list_models, model_spec
from dass_edge.spec import ModelSpec

__all__ = [
    "REMAP_MODES", "ModelSpec", "ResNet", "build_model", "create_model", "list_models", "load_checkpoint",
    "model_spec", "remap", "save_checkpoint",
]
