"""The pooled features a classifier computes anyway: the input of its final Linear layer.

Clip embeddings for curation come from the models' own forward passes (no second run):
a forward hook on the head keeps the last batch's input. Quantized heads (torch-fx int8)
give quantized tensors, which are dequantized; OpenVINO models have no torch layers, so
they give no features (:attr:`HeadInputs.available` is False).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from clipminer.precision import Runner


class HeadInputs:
    """Keeps what the layer ``head`` of ``prepared``'s network received on its last call.

    Args:
        prepared: the model as it runs (any precision); under the guard of
            ``--precision auto`` both networks are watched, and the last one called wins.
        head: attribute path of its final Linear layer (``classifier``, ``fc``,
            ``classifier.3``).
    """

    def __init__(self, prepared: Runner, head: str) -> None:
        self.last: torch.Tensor | None = None
        self._handles: list[Any] = []
        for network in prepared.networks:
            try:
                module: nn.Module = network.get_submodule(head)
            except AttributeError:
                continue
            self._handles.append(module.register_forward_hook(self._keep))

    @property
    def available(self) -> bool:
        return bool(self._handles)

    def _keep(self, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        x = inputs[0]
        if isinstance(x, torch.Tensor):
            if x.is_quantized:
                x = x.dequantize()
            self.last = x.detach().flatten(1).float().cpu()

    def take(self) -> np.ndarray | None:
        """The features of the last call (float32 N×D), once; None when there are none."""
        last, self.last = self.last, None
        return None if last is None else last.numpy()


def weights_id(state_dict: dict[str, torch.Tensor]) -> str:
    """A short content hash of a model's weights: embeddings are only comparable between
    runs whose models have the same id."""
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous().reshape(-1)
        digest.update(name.encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:16]
