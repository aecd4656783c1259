"""hfdistill: distill a tiny query encoder aligned to a frozen dense-retrieval teacher."""

from transformers import AutoConfig, AutoModel

from .cascade import CascadeQueryEncoder
from .configuration_asymmetric import AsymmetricDualEncoderConfig, select_layers
from .data import alignment_datasets, load_queries, split_queries
from .documents import document_inputs, load_documents
from .modeling_asymmetric import AsymmetricDualEncoder
from .teacher import config_from_teacher, from_teacher, load_student
from .trainer import EmbeddingAlignmentTrainer
from .training_args import EmbeddingAlignmentConfig

__version__ = "0.2.0"

AutoConfig.register(AsymmetricDualEncoderConfig.model_type, AsymmetricDualEncoderConfig)
AutoModel.register(AsymmetricDualEncoderConfig, AsymmetricDualEncoder)
# Saved models carry the configuration/modeling files, so `trust_remote_code=True` loads them without hfdistill.
AsymmetricDualEncoderConfig.register_for_auto_class()
AsymmetricDualEncoder.register_for_auto_class("AutoModel")

__all__ = [
    "AsymmetricDualEncoder",
    "AsymmetricDualEncoderConfig",
    "CascadeQueryEncoder",
    "EmbeddingAlignmentConfig",
    "EmbeddingAlignmentTrainer",
    "alignment_datasets",
    "config_from_teacher",
    "document_inputs",
    "from_teacher",
    "load_documents",
    "load_queries",
    "load_student",
    "select_layers",
    "split_queries",
    "__version__",
]
