"""mmscale.models: ViT + connector + decoder LM (flax linen), built from `config.model`."""

from mmscale.models.connectors import get_connector, register_connector
from mmscale.models.flops import param_count, train_flops_per_sequence
from mmscale.models.mllm import MLLM
from mmscale.models.registry import build_model, register_model, validate_model_config

__all__ = ["MLLM", "build_model", "get_connector", "param_count", "register_connector",
           "register_model", "train_flops_per_sequence", "validate_model_config"]
