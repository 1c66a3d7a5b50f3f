"""The run form: what a deployment's page in the Prefect UI lets a user set for one run.

Each form is the partial twin of a params.yaml section (svd.params): the same fields, titles,
descriptions and bounds, every field optional. A field left empty keeps params.yaml's value; a field
set overrides it for this run and is written into params.yaml, as `dvc exp run -S` writes it, so the
run is recorded where DVC reads it and `dvc repro` reproduces it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, create_model
from ruamel.yaml import YAML

from svd import params


def form(section: type[BaseModel]) -> type[BaseModel]:
    """`section` with every field optional (None: params.yaml's value), nested sections likewise."""
    fields: dict[str, Any] = {}
    for name, f in section.model_fields.items():
        kind: Any = f.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            kind = form(kind)
        elif (
            get_origin(kind) is dict
            and isinstance(value := get_args(kind)[1], type)
            and issubclass(value, BaseModel)
        ):
            kind = dict[str, form(value)]  # type: ignore[misc]
        typed = Annotated[kind, *f.metadata] if f.metadata else kind
        fields[name] = (typed | None, Field(default=None, title=f.title, description=f.description))
    name = section.__name__.removesuffix("Params") + "Form"
    config = ConfigDict(extra="forbid", frozen=True)
    return create_model(name, __config__=config, __doc__=section.__doc__, **fields)


SynthForm = form(params.SynthParams)
CurateForm = form(params.CurateParams)
FilterForm = form(params.FilterParams)
ModelForm = form(params.ModelParams)
TrainForm = form(params.TrainParams)
ConditioningForm = form(params.ConditioningParams)
EvaluateForm = form(params.EvaluateParams)
PoolsForm = form(params.PoolsParams)
RegisterForm = form(params.RegisterParams)
AblateForm = form(params.AblateParams)


def changes(**sections: BaseModel | int | None) -> dict[str, Any]:
    """What the forms set, as a nested dict of params.yaml keys; empty when they set nothing."""
    out: dict[str, Any] = {}
    for name, section in sections.items():
        value = (
            section.model_dump(mode="json", exclude_none=True) if isinstance(section, BaseModel) else section
        )
        if value not in (None, {}):
            out[name] = value
    return out


def settings(changes: dict[str, Any]) -> list[str]:
    """`changes` as `dvc exp run -S` arguments (`filter.hq.seconds.min=3.0`): what the run's page
    shows, and the command that reproduces the run."""

    def leaves(prefix: str, value: Any) -> list[str]:
        if isinstance(value, dict):
            return [x for k, v in value.items() for x in leaves(f"{prefix}.{k}", v)]
        return [f"{prefix}={json.dumps(value)}"]

    return [x for k, v in changes.items() for x in leaves(k, v)]


def apply(params_path: str, changes: dict[str, Any]) -> None:
    """Write `changes` into params_path in place, comments and order kept, after checking that the
    result is valid params: a bad value fails the run before anything is written."""
    params.load(params_path, changes)
    yaml = YAML()  # round trip: the file stays the one a user edits
    path = Path(params_path)
    doc = yaml.load(path)
    merge_into(doc, changes)
    with path.open("w") as f:
        yaml.dump(doc, f)


def merge_into(doc: Any, changes: dict[str, Any]) -> None:
    """svd.params.merge, in place on ruamel's document: a new dict would lose the file's comments."""
    for k, v in changes.items():
        if isinstance(v, dict) and isinstance(doc.get(k), dict):
            merge_into(doc[k], v)
        else:
            doc[k] = v


def override(params_path: str, **sections: BaseModel | int | None) -> list[str]:
    """Apply what this run's forms set to params_path and say so on the run's page, with the DVC
    command that reproduces it. The settings applied, as `-S` arguments."""
    from prefect.artifacts import create_markdown_artifact

    changed = changes(**sections)
    sets = settings(changed)
    if sets:
        apply(params_path, changed)
        flags = " ".join(f"-S '{s}'" for s in sets)
        create_markdown_artifact(
            f"This run set, in `{params_path}`: {', '.join(f'`{s}`' for s in sets)}.\n\n"
            f"The same run through DVC: `dvc exp run {flags}` (or `dvc repro` on this params file).",
            key="params-set",
            description="What the run form changed in params.yaml",
        )
        print(f"{params_path}: set {' '.join(sets)}")
    return sets
