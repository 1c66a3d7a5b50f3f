"""Promotion gates and version reuse: the decisions registration makes, on their own."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from svd.params import Gates, RegisterParams
from svd.registry import challenge, gate_failures


def test_gates_pass_fail_and_unset():
    metrics = {"val_loss": 0.4, "motion_spearman": 0.6}
    assert gate_failures(metrics, Gates()) == []
    assert gate_failures(metrics, Gates(max_val_loss=0.5, min_motion_spearman=0.5)) == []
    failures = gate_failures(metrics, Gates(max_val_loss=0.3, min_motion_spearman=0.9))
    assert len(failures) == 2 and "val_loss" in failures[0] and "motion_spearman" in failures[1]
    # an undefined correlation (constant motion in every sample) cannot pass a motion gate
    assert gate_failures({"val_loss": 0.1, "motion_spearman": None}, Gates(min_motion_spearman=0.0))


def test_a_challenger_must_beat_the_champion_by_the_margins():
    held = {"val_loss": 0.5, "motion_spearman": 0.4}
    margins = {"val_loss": 0.05, "motion_spearman": 0.1, "fvd": 10.0}
    lost, compared = challenge({"val_loss": 0.44, "motion_spearman": 0.6, "fvd": 300.0}, held, margins)
    assert lost == [] and len(compared) == 3 and "fvd: not compared" in compared[2]  # the champion has none
    lost, _ = challenge({"val_loss": 0.47, "motion_spearman": 0.45}, held, margins)
    assert len(lost) == 2 and lost[0].startswith("val_loss 0.47") and lost[1].startswith("motion_spearman")
    lost, _ = challenge(
        {"val_loss": 0.5, "motion_spearman": None}, held, {"val_loss": 0.0, "motion_spearman": 0}
    )
    assert lost == ["motion_spearman: the candidate has none, the champion 0.4"]  # no worse on val_loss
    with pytest.raises(ValueError, match=r"no metric \['val_los'\]"):  # a typo would switch a margin off
        RegisterParams(margins={"val_los": 0.0})


def test_the_same_weights_keep_their_version_and_aliases_follow(tmp_path, monkeypatch):
    """What DVC restores, the registry names: registering weights again (a rerun, or the model of an
    earlier params set brought back by DVC) gives their first version back, not a copy under a new
    number, and the aliases move with it; weights that fail the gates as set now lose champion."""
    import mlflow
    import torch

    from svd import registry
    from svd.model import components
    from svd.model.inflate import inflate
    from svd.model.motion import MotionBuckets
    from svd.params import Architecture
    from svd.registry import register

    monkeypatch.chdir(tmp_path)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    torch.manual_seed(0)
    c = components.build(Architecture(), 32)
    c.unet = inflate(c.unet, 32, 4)
    c.motion = MotionBuckets.from_scores(torch.linspace(0, 4, 20).numpy())
    client = mlflow.MlflowClient()
    experiment = client.create_experiment("registry")

    def registered(val_loss: float = 0.1, margin: float = 0.0) -> tuple[str, list[str]]:
        components.save(c, tmp_path / "model")
        with mlflow.start_run(experiment_id=experiment) as run:  # not the process's active experiment
            r = register(
                tmp_path / "model",
                "svd-t",
                {"val_loss": val_loss},
                Gates(max_val_loss=1.0),
                run.info.run_id,
                {"val_loss": margin},
                "http://samples",
            )
        return r.version, r.aliases

    def champion() -> str | None:
        return registry.champion(client, "svd-t")

    try:
        assert registered() == ("1", ["candidate", "champion"])
        # the model holds no pickle (its entry point is a code file), and it loads these weights
        local = Path(mlflow.artifacts.download_artifacts("models:/svd-t/1", dst_path=str(tmp_path / "get")))
        flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]
        assert flavor["loader_module"] == "mlflow.pyfunc.loaders.code_model" and "python_model" not in flavor
        assert flavor["model_code_path"].endswith("served_model.py")
        pickled = (".pkl", ".pickle", ".bin", ".pt", ".pth")
        assert not [f.name for f in local.rglob("*") if any(s in f.name for s in pickled)]
        monkeypatch.setattr(sys, "path", list(sys.path))  # loading puts its code first on the path
        # logging ran the file in this process: forget the model it set, so loading must set it again
        monkeypatch.setattr(mlflow.models.model, "__mlflow_model__", None)
        served = mlflow.pyfunc.load_model(str(local)).unwrap_python_model()
        assert torch.equal(served.components.unet.conv_out.bias, c.unet.conv_out.bias)
        assert registered() == ("1", ["candidate", "champion"])  # a rerun: no second copy
        first = c.unet.conv_out.bias.detach().clone()
        with torch.no_grad():
            c.unet.conv_out.bias += 1
        assert registered() == ("2", ["candidate", "champion"]) and champion() == "2"
        with torch.no_grad():
            c.unet.conv_out.bias.copy_(first)  # the first weights again, as DVC restores them
        assert registered() == ("1", ["candidate", "champion"]) and champion() == "1"
        assert registered(val_loss=5.0) == ("1", ["candidate"]) and champion() is None
        assert len(client.search_model_versions("name = 'svd-t'")) == 2
        # the challenger rule: with a margin, version 3 must beat champion 1's val_loss by it
        assert registered(val_loss=0.1) == ("1", ["candidate", "champion"])
        with torch.no_grad():
            c.unet.conv_out.bias -= 1
        assert registered(0.08, margin=0.05) == ("3", ["candidate"]) and champion() == "1"  # > 0.1 - 0.05
        card = client.get_model_version("svd-t", "3").description
        assert "does not beat" in client.get_model_version("svd-t", "3").tags["gates"]
        assert "# svd-t version 3" in card and "val_loss: 0.08" in card and "not beaten" in card
        assert "[The evaluation's sample videos](http://samples)" in card
        assert registered(0.04, margin=0.05) == ("3", ["candidate", "champion"]) and champion() == "3"
    finally:
        mlflow.set_tracking_uri(previous)
