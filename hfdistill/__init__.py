"""hfdistill: distill a tiny query encoder aligned to a frozen dense-retrieval teacher."""

from transformers import AutoConfig, AutoModel

from .configuration_asymmetric import AsymmetricDualEncoderConfig, select_layers
from .modeling_asymmetric import AsymmetricDualEncoder

__version__ = "0.1.0"

AutoConfig.register(AsymmetricDualEncoderConfig.model_type, AsymmetricDualEncoderConfig)
AutoModel.register(AsymmetricDualEncoderConfig, AsymmetricDualEncoder)
# Saved models carry the configuration/modeling files, so `trust_remote_code=True` loads them without hfdistill.
AsymmetricDualEncoderConfig.register_for_auto_class()
AsymmetricDualEncoder.register_for_auto_class("AutoModel")

__all__ = ["AsymmetricDualEncoder", "AsymmetricDualEncoderConfig", "select_layers", "__version__"]
