"""The registered model's entry point, logged as MLflow's "model from code": MLflow stores this
file's text beside the model and runs it when the model loads, where a PythonModel instance would
be cloudpickled and unpickled. So the registry holds no pickle at all (the weights are safetensors),
and the model does not depend on the Python and cloudpickle versions that saved it."""

from mlflow.models import set_model

from svd.registry import SVDPipelineModel

set_model(SVDPipelineModel())
