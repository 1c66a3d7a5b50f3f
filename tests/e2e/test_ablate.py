"""The threshold ablation on the smoke profile's curated corpus: every scored annotation at every
cut against the unfiltered baseline, identical small models, one shared held-out set, ranked; parent
and child MLflow runs; a latent store of the ablation's own, filled once and read by every later
arm, while the stage's store is left as it was."""

from __future__ import annotations

import mlflow
import pandas as pd

from svd.steps.ablate import ablate


def test_arms_differ_in_their_training_data_alone_and_are_ranked(tiny_params, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    p = tiny_params
    # a stage with a latent store, which is a DVC output in a pipeline: the arms keep to one of their own
    video = p.train.video.model_copy(update={"init": None, "latents": str(tmp_path / "latents")})
    settings = {
        "out": tmp_path / "ablation",
        "stage": "video",
        "steps": 2,
        "cuts": (0.25, 0.5),
        "annotations": {"motion_score": "lowest", "text_area": "highest", "aesthetic_score": "lowest"},
    }
    p = p.model_copy(
        update={
            "train": p.train.model_copy(update={"video": video}),
            "ablate": p.ablate.model_copy(update=settings),
        }
    )
    results = ablate(p)
    lvd = pd.read_parquet(p.filter.out / "lvd.parquet")
    train = int((lvd["split"] == "train").sum())
    assert sorted(results["arm"]) == sorted(
        ["none", "motion_score-0.25", "motion_score-0.5", "text_area-0.25", "text_area-0.5"]
    )  # aesthetic_score is not scored (no CLIP weights): no arm
    assert results["val_loss_at_start"].nunique() == 1  # one starting model, one held-out set, one motion map
    assert results["val_loss"].nunique() > 1  # and the data made a difference
    by_arm = results.set_index("arm")
    assert by_arm.loc["none", "train_clips"] == train and by_arm.loc["none", "vs_no_filter"] == 0
    assert (
        by_arm.loc["motion_score-0.5", "train_clips"] < by_arm.loc["motion_score-0.25", "train_clips"] < train
    )
    assert by_arm["val_clips"].nunique() == 1  # one held-out set for every arm
    assert (p.ablate.out / "ablation.png").stat().st_size > 0
    assert pd.read_csv(p.ablate.out / "results.csv")["arm"].tolist() == results["arm"].tolist()

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["svd/ablate"], output_format="list")
    parent = next(r for r in runs if r.info.run_name == "ablate")
    children = {
        r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    }
    assert set(children) == set(results["arm"]) and parent.data.params["not_scored"] == "aesthetic_score"
    computed = {n: r.data.metrics["latents_computed"] for n, r in children.items()}
    assert computed["none"] > 0 and sum(v for n, v in computed.items() if n != "none") == 0  # stored once
    assert not (tmp_path / "latents").exists() and any((p.ablate.out / "latents").iterdir())
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(parent.info.run_id, "ablation")}
    assert {"ablation/results.csv", "ablation/ablation.png"} <= artifacts
