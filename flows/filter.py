"""filter: the clip table into the LVD, LVD-F and HQ subsets."""

from __future__ import annotations

import mlflow
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.common import artifact_url, link_mlflow, run_name, run_tags
from flows.forms import FilterForm, override
from svd import params, tracking
from svd.steps.filter import filter as filter_step


@task(name="filter")
def filter_task(params_path: str) -> dict:
    return filter_step(params.load(params_path), run_tags())


@flow(name="filter", flow_run_name=run_name, log_prints=True)
def filter(filter: FilterForm = FilterForm(), params_path: str = "params.yaml") -> dict[str, int]:  # noqa: B008
    """Filter the clip table into the LVD, LVD-F and HQ subsets (the paper's percentile filters).

    Args:
        filter: Filter thresholds for this run; empty fields keep params.yaml's.
        params_path: The params file; what the form sets is written into it.
    """
    override(params_path, filter=filter)
    filtered = filter_task(params_path)
    create_table_artifact([{"subset": k, "clips": v} for k, v in filtered["clips"].items()], key="subsets")
    create_table_artifact(filtered["rules"], key="filter-rules", description="Clips each filter rule dropped")
    if runs := link_mlflow("filter"):  # the report's pictures, served by the tracking server from the run
        scores, dropped = (
            f"![{n}]({artifact_url(runs[0], f'report/{n}.png')})" for n in ("scores", "dropped")
        )
        docs = tracking.run_page(mlflow.get_run(runs[0]).info.experiment_id, runs[0], "report/data-docs")
        create_markdown_artifact(
            f"### Scores with their thresholds\n\n{scores}\n\n### Frames of clips each rule dropped\n\n"
            f"{dropped}\n\n### Data checks\n\n[great_expectations Data Docs]({docs}) in the run's artifacts:"
            " every suite's results, the clip table's and each subset's (download the folder and open"
            " index.html to follow its links)",
            key="curation-report",
            description="The filter step's MLflow run keeps these PNGs and the Data Docs",
        )
    return filtered["clips"]
