"""Which Stage III runs announce their model to the automations: only a deployment's run with no
parent. The pipeline evaluates its own runs next; `python -m flows` and `dvc repro` runs belong to
no deployment."""

from __future__ import annotations

import uuid

from prefect.client.schemas.objects import FlowRun

from flows.train import announce, nothing_evaluates, train


def run(stage: str = "finetune", deployment: bool = True, parent: bool = False) -> FlowRun:
    return FlowRun(
        flow_id=uuid.uuid4(),
        parameters={"stage": stage},
        deployment_id=uuid.uuid4() if deployment else None,
        parent_task_run_id=uuid.uuid4() if parent else None,
    )


def test_only_a_deployments_stage_three_run_without_parent_is_left_to_the_automations() -> None:
    assert nothing_evaluates(run())  # started by hand, by the API or a schedule, on either pool
    assert not nothing_evaluates(run(parent=True))  # the pipeline's, inline or on a pool
    assert not nothing_evaluates(run(deployment=False))  # python -m flows, dvc repro
    assert not nothing_evaluates(run(stage="video"))  # Stage II is not evaluated
    assert announce in train.on_completion_hooks  # and the train flow asks on completion
