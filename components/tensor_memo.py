"""Recent results of a costly, deterministic computation, by a key naming its inputs' content.

Within one process the same text is embedded or tokenised again and again (every anchor of one
public mix, every evaluation of one held-out split); a memo bounded in bytes keeps the latest.
Callers get copies, so one caller's change is never another's input.
"""

from __future__ import annotations

from collections import OrderedDict

import torch


class TensorMemo:
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._kept: OrderedDict[str, torch.Tensor] = OrderedDict()

    def get(self, key: str | None) -> torch.Tensor | None:
        if key is None or key not in self._kept:
            return None
        self._kept.move_to_end(key)
        return self._kept[key].clone()

    def put(self, key: str | None, tensor: torch.Tensor) -> None:
        """Keep a copy of `tensor` (not when it alone exceeds the bound), the oldest out first."""
        if key is None or tensor.nbytes > self.max_bytes:
            return
        self._kept[key] = tensor.clone()
        while sum(t.nbytes for t in self._kept.values()) > self.max_bytes:
            self._kept.popitem(last=False)

    def clear(self) -> None:
        self._kept.clear()
