"""Average the weights of helper-network files (``python -m training average``).

Fine-tunes of one weight file with the same recipe and different seeds land in one basin
but differ in what they flag: the scratch detector's runs from the same start varied by
0.07 in F1 at the threshold rule, swung by single real photos. The mean of their weights
(a "model soup") is one network of the same size and cost whose errors are averaged
instead of picked among. The files must be of one format, version and network config;
the result is written atomically in the same layout and loaded back by the product.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import torch

from oldphoto_model.atomic import atomic_write
from oldphoto_model.detect import DETECTOR_FORMAT, load_detector
from oldphoto_model.errors import WeightsError
from oldphoto_model.learned_fill import FILL_FILE
from oldphoto_model.netfile import HelperFile
from oldphoto_model.tone import TONE_FILE
from oldphoto_model.weights import read_payload

#: format name -> the product's loader, to check that the written file loads
_HELPERS: dict[str, HelperFile] = {h.fmt: h for h in (FILL_FILE, TONE_FILE)}
_PLAIN_KEYS = ("format", "version", "config", "metadata")


def _loader(fmt: str, name: str) -> Callable[[Path], Any]:
    if fmt == DETECTOR_FORMAT:
        return load_detector
    if fmt in _HELPERS:
        return _HELPERS[fmt].load
    raise WeightsError(name, f"format {fmt!r} is not a helper-network file this command averages "
                             f"(known: {', '.join(sorted([DETECTOR_FORMAT, *_HELPERS]))})")


def _network_key(payload: dict[str, Any], name: str) -> str:
    keys = [k for k in payload if k not in _PLAIN_KEYS]
    if len(keys) != 1 or not isinstance(payload[keys[0]], dict):
        raise WeightsError(name, "not a helper-network weight file (expected one state dict)")
    return keys[0]


def average_weight_files(paths: list[str | os.PathLike], out: str | os.PathLike,
                         metadata: dict[str, Any] | None = None) -> Path:
    """Write the mean of the state dicts of ``paths`` (two or more helper-network files of one
    format, version and config) to ``out``; its metadata is the first file's with
    ``metadata`` applied and ``averaged_from`` (each file as given, its sha256 and metadata).
    Mismatches are WeightsErrors naming the file. Returns the path, loaded back first."""
    if len(paths) < 2:
        raise ValueError("averaging needs at least two weight files")
    payloads = [read_payload(p) for p in paths]
    first, name0 = payloads[0], str(paths[0])
    if not isinstance(first, dict) or "format" not in first:
        raise WeightsError(name0, "not a helper-network weight file")
    load = _loader(first["format"], name0)
    key = _network_key(first, name0)
    for p, pl in zip(paths[1:], payloads[1:]):
        same = isinstance(pl, dict) and all(pl.get(k) == first[k] for k in ("format", "version", "config"))
        if not same or _network_key(pl, str(p)) != key:
            raise WeightsError(str(p), f"not the same kind of network as {name0} (format, version and "
                                       "config must match)")
        if {k: tuple(v.shape) for k, v in pl[key].items()} != {k: tuple(v.shape) for k, v in first[key].items()}:
            raise WeightsError(str(p), f"its tensors differ from {name0}'s")
    state = {k: torch.stack([pl[key][k].float() for pl in payloads]).mean(0) for k in first[key]}
    meta = dict(json.loads(first.get("metadata", "{}")))
    meta.update(metadata or {})
    infos = [load(Path(p)).weights_info for p in paths]
    meta["averaged_from"] = [{"file": str(p), "sha256": i.sha256, "metadata": i.metadata}
                             for p, i in zip(paths, infos)]
    payload = {"format": first["format"], "version": first["version"], "config": first["config"],
               "metadata": json.dumps(meta, sort_keys=True), key: state}
    path = atomic_write(Path(out), lambda f: torch.save(payload, f))
    load(path)
    return path
