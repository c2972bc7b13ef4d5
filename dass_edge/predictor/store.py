"""Saving and loading trained predictors: one safetensors file holding an ensemble of DaSS networks, or of
:class:`~dass_edge.predictor.hybrid.HybridPredictor` members (``model.kind == "hybrid"`` in the metadata).

The metadata says what the predictor is (constructor settings, training config, how it adapts),
what it learned from (database checksum, rows, tasks, held-out tasks) and how well it did on the
held-out tasks, so ``meta info`` and ``search`` can show its provenance.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from dass_edge.errors import DassEdgeError
from dass_edge.io import atomic_write
from dass_edge.predictor.model import DaSSPredictor
from dass_edge.validate import check_finite_record

__all__ = ["PREDICTOR_FORMAT", "default_predictor_path", "save_predictor", "load_predictor", "read_predictor_meta"]

PREDICTOR_FORMAT = "dass-edge-predictor/1"
_CTOR_KEYS = ("embed_channels", "arch_dim", "hidden", "use", "init_alpha")


def default_predictor_path() -> Path:
    from dass_edge.resources import asset_path

    return asset_path("predictor.safetensors")


def _member_state(model) -> tuple[dict[str, torch.Tensor], dict]:
    if isinstance(model, DaSSPredictor):
        return model.state_dict(), {"kind": "dass", **{k: model.config[k] for k in _CTOR_KEYS}}
    return model.to_state()


def save_predictor(path: str | Path, models: list, meta: dict) -> Path:
    """Write an ensemble (members of one kind sharing one config) and its metadata, atomically."""
    from safetensors.torch import save_file

    if not models:
        raise ValueError("nothing to save")
    states = [_member_state(m) for m in models]
    tensors = {f"m{i}.{k}": v.detach().contiguous().clone() for i, (state, _) in enumerate(states)
               for k, v in state.items()}
    bad = sum(int((~torch.isfinite(v)).sum()) for v in tensors.values() if v.is_floating_point())
    if bad:
        raise DassEdgeError(f"refusing to write {path}: {bad} predictor weights are NaN or infinite (it diverged)")
    ctor = states[0][1]
    full = {**meta, "format": PREDICTOR_FORMAT, "members": len(models), "model": ctor}
    check_finite_record(full, f"{path} metadata")
    text = json.dumps(full, allow_nan=False)
    return atomic_write(path, lambda p: save_file(tensors, str(p), metadata={"dass_edge": text}))


def read_predictor_meta(path: str | Path) -> dict:
    """The metadata alone (no weights loaded)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise DassEdgeError(f"predictor {path} does not exist; train one with 'dass-edge meta train'")
    try:
        with safe_open(str(path), "pt") as f:
            raw = (f.metadata() or {}).get("dass_edge")
    except Exception as e:  # safetensors raises its own error types for foreign or truncated files
        raise DassEdgeError(f"{path} is not a readable safetensors file ({type(e).__name__})") from None
    try:
        meta = json.loads(raw) if raw else None
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != PREDICTOR_FORMAT:
        raise DassEdgeError(f"{path} is not a dass-edge predictor (written by 'dass-edge meta train')")
    return meta


def load_predictor(path: str | Path | None = None) -> tuple[list, dict]:
    """The ensemble (DaSS networks in eval mode, or hybrid members) and its metadata; ``None`` loads the
    shipped predictor."""
    from safetensors.torch import load_file

    from dass_edge.predictor.hybrid import HybridPredictor

    path = Path(path) if path is not None else default_predictor_path()
    meta = read_predictor_meta(path)
    state = load_file(str(path))
    ctor = dict(meta["model"])
    models: list = []
    for i in range(int(meta["members"])):
        prefix = f"m{i}."
        if ctor.get("kind") == "hybrid":
            member = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            try:
                models.append(HybridPredictor.from_state(member, ctor))
            except (KeyError, RuntimeError, TypeError) as e:
                raise DassEdgeError(f"predictor {path} is damaged: member {i} does not match its config "
                                    f"({type(e).__name__})") from None
            continue
        model = DaSSPredictor(ctor["embed_channels"], ctor["arch_dim"], hidden=ctor["hidden"], use=ctor["use"],
                              init_alpha=ctor["init_alpha"])
        member = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        try:
            model.load_state_dict(member)
        except RuntimeError as e:
            raise DassEdgeError(f"predictor {path} is damaged: member {i} does not match its config ({e})"[:300]
                                ) from None
        model.config.update({k: meta["train"][k] for k in ("adapt", "inner_steps", "target", "adapt_scope")
                             if k in meta.get("train", {})})
        models.append(model.eval())
    meta["path"] = str(path)
    return models, meta
