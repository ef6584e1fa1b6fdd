"""Average the weights of helper-network files (``python -m training average``).

Fine-tunes of one weight file with the same recipe and different seeds land in one basin
but differ in what they flag: the scratch detector's runs from the same start varied by
0.07 in F1 at the threshold rule, swung by single real photos. The mean of their weights
(a "model soup") is one network of the same size and cost whose errors are averaged
instead of picked among. The files must be of one format, version and network config;
the result is written atomically in the same layout and loaded back by the product.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from oldphoto_model.detect import DETECTOR_FORMAT, load_detector, save_detector
from oldphoto_model.errors import WeightsError
from oldphoto_model.learned_fill import FILL_FILE
from oldphoto_model.tone import TONE_FILE
from oldphoto_model.weights import read_payload

#: format name -> the product's (loader, writer) of that kind of file
_KINDS: dict[str, tuple[Callable[..., nn.Module], Callable[..., Path]]] = {
    DETECTOR_FORMAT: (load_detector, save_detector),
    **{h.fmt: (h.load, h.save) for h in (FILL_FILE, TONE_FILE)}}


def _kind(path: str | os.PathLike) -> tuple[Callable[..., nn.Module], Callable[..., Path]]:
    """The loader and writer for the kind of helper-network file ``path`` is."""
    payload = read_payload(path)
    fmt = payload.get("format") if isinstance(payload, dict) else None
    if fmt not in _KINDS:
        raise WeightsError(str(path), f"format {fmt!r} is not a helper-network file this command "
                                      f"averages (known: {', '.join(sorted(_KINDS))})")
    return _KINDS[fmt]


def average_weight_files(paths: list[str | os.PathLike], out: str | os.PathLike,
                         metadata: dict[str, Any] | None = None) -> Path:
    """Write the mean of the state dicts of ``paths`` (two or more helper-network files of one
    format, version and config) to ``out``; its metadata is the first file's with
    ``metadata`` applied and ``averaged_from`` (each file as given, its sha256 and metadata).
    Mismatches are WeightsErrors naming the file. Returns the path, loaded back first."""
    if len(paths) < 2:
        raise ValueError("averaging needs at least two weight files")
    load, save = _kind(paths[0])
    nets = [load(p) for p in paths]        # each checked by the product's loader of that kind
    first = nets[0]
    for p, net in zip(paths[1:], nets[1:]):
        if getattr(net, "config") != getattr(first, "config"):
            raise WeightsError(str(p), f"not the same kind of network as {paths[0]} (format, version "
                                       "and config must match)")
    states = [net.state_dict() for net in nets]
    first.load_state_dict({k: torch.stack([sd[k].float() for sd in states]).mean(0) for k in states[0]})
    infos = [getattr(net, "weights_info") for net in nets]
    meta = {**infos[0].metadata, **(metadata or {}),
            "averaged_from": [{"file": str(p), "sha256": i.sha256, "metadata": i.metadata}
                              for p, i in zip(paths, infos)]}
    path = save(first, out, meta)
    load(path)
    return path
