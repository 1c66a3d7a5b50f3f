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
        elif get_origin(kind) is dict and issubclass(get_args(kind)[1], BaseModel):
            kind = dict[str, form(get_args(kind)[1])]  # type: ignore[misc]
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


def settings(**sections: BaseModel | int | None) -> list[str]:
    """What the forms set, as `dvc exp run -S` arguments (`filter.hq.seconds.min=3.0`)."""

    def leaves(prefix: str, value: Any) -> list[str]:
        if isinstance(value, dict):
            return [x for k, v in value.items() for x in leaves(f"{prefix}.{k}", v)]
        return [f"{prefix}={json.dumps(value)}"]

    out: list[str] = []
    for name, section in sections.items():
        value = (
            section.model_dump(mode="json", exclude_none=True) if isinstance(section, BaseModel) else section
        )
        if value not in (None, {}):
            out += leaves(name, value)
    return out


def apply(params_path: str, sets: list[str]) -> None:
    """Write `key=value` settings into params_path in place, comments and order kept, after checking
    that the result is valid params: a bad value fails the run before anything is written."""
    changes: dict[str, Any] = {}
    for s in sets:
        key, value = s.split("=", 1)
        *parents, leaf = key.split(".")
        node = changes
        for k in parents:
            node = node.setdefault(k, {})
        node[leaf] = json.loads(value)
    params.load(params_path, changes)
    yaml = YAML()  # round trip: the file stays the one a user edits
    path = Path(params_path)
    doc = yaml.load(path)
    merge_into(doc, changes)
    with path.open("w") as f:
        yaml.dump(doc, f)


def merge_into(doc: Any, changes: dict[str, Any]) -> None:
    for k, v in changes.items():
        if isinstance(v, dict) and isinstance(doc.get(k), dict):
            merge_into(doc[k], v)
        else:
            doc[k] = v


def override(params_path: str, **sections: BaseModel | int | None) -> list[str]:
    """Apply what this run's forms set to params_path and say so on the run's page, with the DVC
    command that reproduces it. The settings applied, as `-S` arguments."""
    from prefect.artifacts import create_markdown_artifact

    sets = settings(**sections)
    if sets:
        apply(params_path, sets)
        flags = " ".join(f"-S '{s}'" for s in sets)
        create_markdown_artifact(
            f"This run set, in `{params_path}`: {', '.join(f'`{s}`' for s in sets)}.\n\n"
            f"The same run through DVC: `dvc exp run {flags}` (or `dvc repro` on this params file).",
            key="params-set",
            description="What the run form changed in params.yaml",
        )
        print(f"{params_path}: set {' '.join(sets)}")
    return sets
