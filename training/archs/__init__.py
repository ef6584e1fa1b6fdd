"""Training-only networks: discriminators and VGG19 for the perceptual loss."""
from .discriminators import LatentDiscriminator, MultiScaleDiscriminator, PatchDiscriminator
from .vgg import VGG19Features, load_vgg19

__all__ = ["LatentDiscriminator", "MultiScaleDiscriminator", "PatchDiscriminator",
           "VGG19Features", "load_vgg19"]
