"""Weight files of the small single-network helpers (the scratch detector, the tone
estimator): one layout, one writer, one reader.

Layout (a ``torch.save`` dict of plain values and tensors, read with
``weights_only=True``, written atomically; docs/WEIGHTS.md):

    format    the helper's format name, e.g. "oldphoto-detector-weights"
    version   1
    config    JSON text of the network's config (``to_dict()``)
    metadata  JSON text: provenance, and whatever the helper's training chose
    <key>     state dict of the network (float32)
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generic, Optional, TypeVar

import torch
from torch import nn

from .atomic import atomic_write
from .errors import WeightsError
from .weights import WeightsInfo, _sha256, read_payload

NetT = TypeVar("NetT", bound=nn.Module)


def save_network(net: nn.Module, path: str | os.PathLike, fmt: str, version: int, key: str,
                 metadata: dict[str, Any] | None = None) -> Path:
    """Write ``net`` (which has a ``config`` with ``to_dict()``) atomically in the layout above."""
    payload = {"format": fmt, "version": version,
               "config": json.dumps(getattr(net, "config").to_dict(), sort_keys=True),
               "metadata": json.dumps(metadata or {}, sort_keys=True),
               key: {k: v.detach().to("cpu", torch.float32) for k, v in net.state_dict().items()}}
    return atomic_write(Path(path), lambda f: torch.save(payload, f))


def load_network(path: Path, fmt: str, version: int, key: str, label: str,
                 build: Callable[[dict[str, Any]], NetT], map_location: str | torch.device = "cpu") -> NetT:
    """Read a file written by ``save_network``: ``build(config dict)`` makes the network,
    its state is loaded, it is put in eval mode and gets ``weights_info``. Every problem
    is a WeightsError naming the file (``label`` names the kind of file in messages)."""
    name = str(path)
    if not path.is_file():
        raise WeightsError(name, "file not found" if not path.exists() else "not a regular file")
    payload = read_payload(path, map_location)
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise WeightsError(name, f"not a {label} weight file (expected format {fmt!r})")
    if payload.get("version") != version:
        raise WeightsError(name, f"format version {payload.get('version')!r} is not supported "
                                 f"(this build reads {version})")
    try:
        net = build(json.loads(payload["config"]))
        metadata = json.loads(payload.get("metadata", "{}"))
        net.load_state_dict(payload[key])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise WeightsError(name, f"invalid {key}: {str(e)[:300]}") from e
    net.eval()
    # an attribute the network class does not declare (the restoration model's way)
    setattr(net, "weights_info", WeightsInfo(path=name, sha256=_sha256(path),
                                             config=getattr(net, "config"), metadata=metadata))
    return net


@dataclass(frozen=True)
class HelperFile(Generic[NetT]):
    """One helper network's weight file: its ``fmt`` and ``version``, the state dict's
    ``key``, a ``label`` for messages, the installed ``default`` file and what to say when
    it is missing, and ``build`` (config dict -> network)."""

    fmt: str
    version: int
    key: str
    label: str
    default: Path
    missing: str
    build: Callable[[dict[str, Any]], NetT]

    def save(self, net: NetT, path: str | os.PathLike, metadata: dict[str, Any] | None = None) -> Path:
        """Write ``net`` atomically (float32)."""
        return save_network(net, path, self.fmt, self.version, self.key, metadata)

    def load(self, path: str | os.PathLike | None = None, map_location: str | torch.device = "cpu") -> NetT:
        """Load ``path`` (default: the installed file; a WeightsError saying ``missing`` when
        this installation lacks it) in eval mode; ``weights_info`` set."""
        if path is None and not self.default.is_file():
            raise WeightsError(str(self.default), self.missing)
        return load_network(Path(path) if path is not None else self.default, self.fmt, self.version,
                            self.key, self.label, self.build, map_location)

    def shipped(self) -> Optional[NetT]:
        """The installed network, or None when this installation has none."""
        return self.load() if self.default.is_file() else None
