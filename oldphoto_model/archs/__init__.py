"""Network architectures (no I/O, no pipeline)."""
from .attention import masked_attention, masked_attention_reference
from .blocks import ResBlock
from .detector import DetectorConfig, ScratchDetector
from .mapping import MappingNetwork
from .nonlocal_block import PartialNonLocalBlock, dilate
from .vae import VAEDecoder, VAEEncoder

__all__ = ["masked_attention", "masked_attention_reference", "ResBlock", "DetectorConfig", "ScratchDetector", "MappingNetwork",
           "PartialNonLocalBlock", "dilate", "VAEDecoder", "VAEEncoder"]
