"""synth: the synthetic corpus, the pipeline's source when no real footage is given."""

from __future__ import annotations

from prefect import flow, task

from flows.common import link_mlflow, run_name, run_tags
from flows.forms import SynthForm, override
from svd import params
from svd.steps.synth import synth as synth_step


@task(name="synth")
def synth_task(params_path: str) -> str:
    return str(synth_step(params.load(params_path), run_tags()))


@flow(name="synth", flow_run_name=run_name, log_prints=True)
def synth(
    synth: SynthForm = SynthForm(),  # noqa: B008
    seed: int | None = None,
    params_path: str = "params.yaml",
) -> str:
    """Make the synthetic corpus: scenes with hard cuts, fades, dissolves, text and known motion.

    Args:
        synth: Corpus settings for this run; empty fields keep params.yaml's.
        seed: The pipeline's seed; empty keeps params.yaml's.
        params_path: The params file; what the form sets is written into it.
    """
    override(params_path, synth=synth, seed=seed)
    corpus = synth_task(params_path)
    link_mlflow("synth")
    return corpus
