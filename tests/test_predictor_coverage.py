"""Extrapolation notes: a teacher outside the predictor's meta-training coverage is flagged, one inside is not."""

from __future__ import annotations

from dass_edge.models.resnet import model_spec
from dass_edge.predictor.coverage import db_coverage, extrapolation_notes, predictor_coverage, training_coverage


def _rows(stem: str, res: int, depths: list[int]) -> list[dict]:
    return [{"resolution": res, "teacher_spec": {"stem": stem, "depths": depths}}]


def test_coverage_of_rows_and_notes():
    cov = db_coverage(_rows("small", 16, [2, 3, 3, 2]) + _rows("imagenet", 64, [3, 4, 6, 3]))
    assert cov == {"stems": ["imagenet", "small"], "resolutions": [16, 64], "max_depth": 6, "rows": 2,
                   "teachers": [{"stem": "imagenet", "resolution": 64, "depths": [3, 4, 6, 3], "widths": []},
                                {"stem": "small", "resolution": 16, "depths": [2, 3, 3, 2], "widths": []}]}
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


def test_training_coverage_leaves_held_out_rows_out():
    rows = _rows("small", 16, [2, 2, 2, 2]) + [{**r, "heldout": True} for r in _rows("imagenet", 64, [3, 4, 6, 3])]
    cov = training_coverage(rows)
    assert cov["stems"] == ["small"] and cov["resolutions"] == [16] and cov["max_depth"] == 2 and cov["rows"] == 1


def test_predictor_coverage_reads_the_record_else_the_shipped_database(tmp_path):
    from dass_edge.metadb import read_rows
    from dass_edge.predictor.model import DaSSPredictor
    from dass_edge.predictor.store import default_predictor_path, save_predictor
    from dass_edge.resources import asset_path

    model = DaSSPredictor(embed_channels=4, arch_dim=6, hidden=8)
    recorded = db_coverage(_rows("imagenet", 64, [3, 4, 6, 3]))
    with_record = save_predictor(tmp_path / "a.safetensors", [model], {"train": {}, "coverage": recorded})
    assert predictor_coverage(with_record) == recorded
    without = save_predictor(tmp_path / "b.safetensors", [model], {"train": {}})
    assert predictor_coverage(without) is None  # not the shipped predictor: nothing to derive it from
    assert predictor_coverage(tmp_path / "missing.safetensors") is None
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    assert predictor_coverage(tmp_path / "junk.safetensors") is None
    if default_predictor_path().is_file():
        from dass_edge.predictor.store import read_predictor_meta

        shipped = read_predictor_meta(default_predictor_path()).get("coverage")
        if shipped is not None:  # the record meta train wrote (v2: the v1 and v2 meta-training rows)
            assert predictor_coverage() == shipped and "small" in shipped["stems"] and 16 in shipped["resolutions"]
        else:  # a predictor without the record: derived from the shipped (v1, small-stem 16 px) database
            want = training_coverage(read_rows(asset_path("metadb.jsonl")))
            assert predictor_coverage() == want and want["stems"] == ["small"] and want["resolutions"] == [16]
