"""ablate: the paper's threshold ablation. For each annotation and each cut, drop that share of
LVD's training clips on that annotation alone, train an identical small model on the rest, and rank
the arms (and an unfiltered baseline) by validation loss on the held-out clips they all share.

Every arm starts from one saved model: the stage's init (or its seeded random build) with one
motion-bucket map fitted on LVD, so that no arm's data changes what a bucket means. Each trains
with the stage's condition and own settings for `ablate.steps` steps from the same seed. A list of
phases is not run, and neither is an autoencoder phase: the arms share one latent space. So the
arms differ in their data alone. The held-out clips are LVD's val split, unfiltered, in every
arm. Percentiles are LVD's, as in the filter step.

Nothing upstream is recomputed or changed. The clip table is read as curation left it, so the
annotation cache is untouched. A stage with a latent store gets one of the ablation's own in
`ablate.out`: the pipeline's is a DVC output, which arms on unfiltered LVD would add entries to,
and `dvc repro` would then re-run everything downstream of it. Entries are keyed by clip content,
so the arms share theirs: the first arm fills it, and only training and evaluation run per arm
after it (and in a later ablation).

Results: one parent MLflow run (experiment svd/ablate) with a child run per arm, the ranked table
(results.csv) and a plot (ablation.png), beside the arms' models in `ablate.out`. Validation loss
ranks the arms here. The paper ranked by human preference, which the arena (svd.evaluate.arena)
collects for any two arms' samples. Only scored annotations have arms: one with no values (no
weights configured) is listed in the parent run's `not_scored` param.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pandas as pd

from svd import report, tracking
from svd.curation.filter import bounds, within
from svd.model import components
from svd.model.motion import MotionBuckets
from svd.params import Params, Rule
from svd.train.loop import fill_latents, seeded_components, train_stage


def arms(lvd: pd.DataFrame, p: Params) -> dict[str, tuple[str, float, pd.DataFrame]]:
    """Arm name -> (annotation, cut, its table): the filtered training clips and every held-out
    clip. "none" is the baseline."""
    val, train = lvd[lvd["split"] == "val"], lvd[lvd["split"] == "train"]
    out = {"none": ("none", 0.0, lvd)}
    for annotation, tail in p.ablate.annotations.items():
        if annotation not in lvd.columns or lvd[annotation].isna().all():
            continue  # not scored: nothing to rank it by
        for cut in p.ablate.cuts:
            rule = Rule(drop_lowest=cut) if tail == "lowest" else Rule(drop_highest=cut)
            kept = within(train, bounds(lvd, {annotation: rule}))
            out[f"{annotation}-{cut:g}"] = (annotation, cut, pd.concat([kept, val], ignore_index=True))
    return out


def starting_point(p: Params, lvd: pd.DataFrame, folder: Path) -> Path:
    """The one model every arm starts from: the stage's init (or its seeded random build) with a
    motion-bucket map fitted on LVD's training clips, so no arm's data changes what a bucket means.
    Saved once, loaded by each arm."""
    c = seeded_components(p, p.stage(p.ablate.stage))
    if c.motion is None:
        c.motion = MotionBuckets.from_scores(lvd.loc[lvd["split"] == "train", "motion_score"].to_numpy())
    components.save(c, folder)
    return folder


def ablate(p: Params, tags: tracking.Tags = None) -> pd.DataFrame:
    a, out = p.ablate, Path(p.ablate.out)
    st = p.stage(a.stage)
    lvd = pd.read_parquet(p.filter.out / "lvd.parquet")
    plan = arms(lvd, p)
    skipped = [c for c in a.annotations if not any(ann == c for ann, _, _ in plan.values())]
    about = (
        f"Threshold ablation: {len(plan) - 1} arms of {a.steps} steps of the {a.stage} stage, each"
        " dropping one share of LVD on one annotation, against the unfiltered baseline."
    )
    shutil.rmtree(out / "arms", ignore_errors=True)  # no arm of an earlier plan may stay among these
    start = starting_point(p, lvd, out / "start")
    shared = {"init": start, "steps": a.steps, "phases": [], "autoencoder_steps": 0, "sample_every": None}
    shared["latents"] = out / "latents" if st.latents is not None else None
    rows = []
    tracking.configure(f"{tracking.EXPERIMENT}/ablate")
    lineage = tracking.lineage({}, tags) | {"mlflow.note.content": about}
    with mlflow.start_run(run_name="ablate", tags=lineage):
        mlflow.log_params(tracking.flatten({"ablate": a.model_dump(mode="json")}))
        mlflow.log_param("not_scored", ", ".join(skipped) or "none")
        for name, (annotation, cut, table) in plan.items():
            folder = out / "arms" / name
            folder.mkdir(parents=True)
            table.to_parquet(folder / f"{st.subset}.parquet")
            arm = st.model_copy(update=shared | {"out": folder / "model"})
            arm_p = p.model_copy(update={"train": p.train.model_copy(update={a.stage: arm})})
            with mlflow.start_run(run_name=name, nested=True):
                mlflow.log_params({"annotation": annotation, "cut": cut})
                if arm.latents is not None:  # what an earlier arm (or run) stored is read, not encoded
                    filled = fill_latents(arm_p, a.stage, folder, p.curate.out)
                    mlflow.log_metric("latents_computed", filled["train_computed"] + filled["val_computed"])
                with tracking.MLflowRecorder() as record:
                    r = train_stage(arm_p, a.stage, folder, p.curate.out, record)
                mlflow.log_metrics(
                    {
                        "val_loss": r.val_loss_after,
                        "val_loss_at_start": r.val_loss_before,
                        "train_clips": r.train_clips,
                    }
                )
            rows.append(
                {
                    "arm": name,
                    "annotation": annotation,
                    "cut": cut,
                    "train_clips": r.train_clips,
                    "val_clips": r.val_clips,
                    "val_loss_at_start": r.val_loss_before,
                    "val_loss": r.val_loss_after,
                }
            )
        results = pd.DataFrame(rows).sort_values(["val_loss", "arm"], ignore_index=True)
        results.insert(0, "rank", range(1, len(results) + 1))
        baseline = float(results.loc[results["arm"] == "none", "val_loss"].iloc[0])
        results["vs_no_filter"] = results["val_loss"] - baseline
        results.to_csv(out / "results.csv", index=False)
        (out / "ablation.png").write_bytes(report.ablation_plot(results))
        mlflow.log_table(results, "ablation/results.json")
        mlflow.log_artifact(str(out / "results.csv"), "ablation")
        mlflow.log_artifact(str(out / "ablation.png"), "ablation")
    return results
