"""The run form: every flow's parameters are typed sections of params.yaml that explain themselves,
and what a run sets lands in params.yaml, where DVC reads it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from prefect.utilities.callables import parameter_schema

from flows.forms import FilterForm, TrainForm, apply, changes, settings
from flows.pipeline import pipeline
from svd.params import ParamsError, load

ROOT = Path(__file__).resolve().parents[3]


def fields(schema: dict, ref: dict) -> dict:
    """The properties of a (possibly nullable) model in a JSON schema."""
    options = ref.get("anyOf", [ref])
    target = next(o for o in options if "$ref" in o)["$ref"].rsplit("/", 1)[1]
    return schema["definitions"][target]["properties"]


def test_the_pipeline_form_mirrors_params_yaml_with_descriptions_and_bounds() -> None:
    schema = parameter_schema(pipeline).model_dump()
    sections = {"seed", "synth", "curate", "filter", "model", "train", "conditioning", "evaluate", "register"}
    assert sections <= set(schema["properties"]), sorted(schema["properties"])
    assert all(schema["properties"][s].get("description") for s in sections)  # from the flow's Args
    hq = fields(
        schema, schema["definitions"]["FilterForm"]["properties"]["hq"]["anyOf"][0]["additionalProperties"]
    )
    assert hq["drop_lowest"]["anyOf"][0] == {"type": "number", "minimum": 0, "exclusiveMaximum": 1}
    video = fields(schema, fields(schema, schema["properties"]["train"])["video"])
    assert video["steps"]["anyOf"][0] == {"type": "integer", "minimum": 1}
    assert video["condition"]["anyOf"][0]["enum"] == ["image", "text"]
    undescribed = [
        f"{form}.{k}"
        for form in ("StageForm", "FilterForm", "RuleForm", "EvaluateForm", "GatesForm", "CutForm")
        for k, v in schema["definitions"][form]["properties"].items()
        if not v.get("description")
    ]
    assert undescribed == []
    curate = schema["definitions"]["CurateForm"]["properties"]
    assert "s3://" in curate["sources"]["description"]


def test_what_a_form_sets_is_written_into_params_yaml_comments_kept(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    form = FilterForm.model_validate({"hq": {"seconds": {"min": 3.0}}})
    train = TrainForm.model_validate({"video": {"steps": 7}, "compute": {"precision": "bf16"}})
    changed = changes(filter=form, train=train, seed=5, evaluate=None)
    assert settings(changed) == [
        "filter.hq.seconds.min=3.0",
        'train.compute.precision="bf16"',
        "train.video.steps=7",
        "seed=5",
    ]
    apply(str(path), changed)
    p = load(path)
    assert (p.filter.hq["seconds"].min, p.train.video.steps, p.train.compute.precision, p.seed) == (
        3.0,
        7,
        "bf16",
        5,
    )
    assert p.filter.hq["motion_score"].drop_lowest == 0.5  # the rest of the rule set is kept
    text = path.read_text()
    assert "# Every knob of the pipeline." in text and "# the paper's LVD-F" in text  # comments kept
    assert changes(filter=FilterForm(), train=TrainForm()) == {}  # an untouched form sets nothing


def test_a_bad_value_fails_before_params_yaml_changes(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    before = path.read_bytes()
    with pytest.raises(ParamsError, match="subset"):
        apply(str(path), {"train": {"video": {"subset": "nope"}}})
    assert path.read_bytes() == before
    with pytest.raises(ValueError, match="less than 1"):
        FilterForm.model_validate({"lvd_f": {"motion_score": {"drop_lowest": 1.5}}})
