"""oldphoto_model: the networks of "Bringing Old Photos Back to Life", the restore
pipeline and the weight-file format. Knows nothing of ZeroMQ or GIMP."""
from .config import AttentionOptions, MappingConfig, ModelConfig, VAEConfig
from .device import select_device, select_precision
from .errors import Cancelled, InputError, OldPhotoError, WeightsError
from .model import RestorationModel, mask_to_latent
from .pipeline import (
           DEFAULT_MASK_THRESHOLD,
           LOW_MEMORY_ATTENTION,
           RestoreOptions,
           Restorer,
           binarize_mask,
           is_oom,
           restore,
)
from .weights import WeightsInfo, default_weights_path, load_model, save_model

__version__ = "0.1.0"

__all__ = ["AttentionOptions", "MappingConfig", "ModelConfig", "VAEConfig", "select_device",
           "select_precision", "Cancelled", "InputError", "OldPhotoError", "WeightsError",
           "RestorationModel", "mask_to_latent", "DEFAULT_MASK_THRESHOLD", "Restorer", "RestoreOptions",
           "LOW_MEMORY_ATTENTION", "is_oom",
           "binarize_mask", "restore", "WeightsInfo", "default_weights_path", "load_model",
           "save_model", "__version__"]
