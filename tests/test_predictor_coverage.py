"""Extrapolation notes: a teacher outside the predictor's meta-training coverage is flagged, one inside is not."""

from __future__ import annotations

from dass_edge.models.resnet import model_spec
from dass_edge.predictor.coverage import db_coverage, extrapolation_notes


def _rows(stem: str, res: int, depths: list[int]) -> list[dict]:
    return [{"resolution": res, "teacher_spec": {"stem": stem, "depths": depths}}]


def test_coverage_of_rows_and_notes():
    cov = db_coverage(_rows("small", 16, [2, 3, 3, 2]) + _rows("imagenet", 64, [3, 4, 6, 3]))
    assert cov == {"stems": ["imagenet", "small"], "resolutions": [16, 64], "max_depth": 6, "rows": 2}
    inside = model_spec("resnet34_in64", num_classes=10)
    assert extrapolation_notes(cov, inside) == []
    r18 = model_spec("resnet18", num_classes=10)  # ImageNet stem, 224 px
    notes = extrapolation_notes(cov, r18)
    assert len(notes) == 1 and "224 px" in notes[0] and "extrapolation" in notes[0]


def test_small_stem_only_database_flags_an_imagenet_teacher_and_depth():
    cov = db_coverage(_rows("small", 16, [2, 2, 2, 2]))
    notes = extrapolation_notes(cov, model_spec("resnet34", num_classes=10, resolution=16))
    assert any("imagenet stem" in n for n in notes) and any("6 blocks" in n for n in notes)
    assert not any("px" in n for n in notes)  # 16 px is covered
    assert extrapolation_notes(None, model_spec("resnet34", num_classes=10)) == []
