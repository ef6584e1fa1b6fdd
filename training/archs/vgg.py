"""VGG19 feature extractor in torchvision's layer layout (``features.<i>.weight``).

torchvision is optional (it does not import with every torch build), so the
layers are defined here; a torchvision ``vgg19`` state-dict file loads unchanged
(classifier keys are ignored).
"""
from __future__ import annotations

import os

import torch
from torch import nn

# torchvision's cfg "E": numbers are conv widths, "M" max-pools
_CFG: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                         512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
#: indices in ``features`` of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1
SLICE_ENDS = (1, 6, 11, 20, 29)
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class VGG19Features(nn.Module):
    """Returns relu1_1 ... relu5_1 of an image in [-1, 1] (ImageNet-normalised inside)."""

    mean: torch.Tensor      # buffers
    std: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in _CFG:
            if isinstance(v, str):      # "M"
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=False)]
                cin = v
        self.features = nn.Sequential(*layers[:SLICE_ENDS[-1] + 1])
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x + 1) / 2 - self.mean) / self.std
        outs, start = [], 0
        for end in SLICE_ENDS:
            for i in range(start, end + 1):
                x = self.features[i](x)
            outs.append(x)
            start = end + 1
        return outs


def load_vgg19(path: str | os.PathLike | None) -> VGG19Features:
    """A frozen VGG19Features; weights from a torchvision ``vgg19`` state dict when ``path``
    is given (random initialisation otherwise)."""
    net = VGG19Features()
    if path:
        sd = torch.load(path, map_location="cpu", weights_only=True)
        if "state_dict" in sd and isinstance(sd["state_dict"], dict):
            sd = sd["state_dict"]
        own = {k: v for k, v in sd.items() if k.startswith("features.")
               and int(k.split(".")[1]) <= SLICE_ENDS[-1]}
        missing, unexpected = net.load_state_dict(own, strict=False)
        if missing:
            raise ValueError(f"{path}: not a torchvision vgg19 state dict (missing {missing[:4]})")
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()
