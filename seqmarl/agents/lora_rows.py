"""Each row of a batch through its own LoRA adapter, for training: :func:`adapters_by_row`.

peft runs a batch with one adapter per row (``adapter_names=``, its "mixed adapter batch"), but
built for inference: each adapted layer gathers every adapter's rows into a copy
(``x[indices]``) and writes the adapter's output back with an indexed add. In a training pass
autograd keeps those copies, and the backward of each indexed read writes a zero-filled tensor
the size of the whole batch: the mixed update through it took 1.38x (N = 4) and 1.85x (N = 8)
the agent-by-agent time on the tiny model, where this module's path took 1.04x and 0.97x
(``benchmarks/mixed_update.py``, CPU, 2026-12-08; docs/performance.md).

Here the rows come grouped by adapter (every agent's rows in one block, as the learners' mixed
update concatenates them): each adapted linear layer runs the frozen base layer once over the
whole batch and each adapter's low-rank branch over its own block (``x.split``: views, no copy),
then adds the blocks' outputs in one tensor. Per row this is the computation of peft's own forward
with that adapter active (``base(x) + B(A(dropout(x))) * scaling``), so the result equals it to
float rounding, and each adapter's gradient comes from its own rows only.

Only plain LoRA on linear layers (``lora.Linear``, GPT-2's ``Conv1D`` included) takes this
path; a model with another adapted layer type or a LoRA variant (DoRA, ...) returns ``False``
from :func:`supported` and the caller uses peft's ``adapter_names=``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from peft.tuners.lora.layer import Linear as LoraLinear
from peft.tuners.lora.layer import LoraLayer
from torch import nn

__all__ = ["adapters_by_row", "blocks", "supported"]


def supported(model: nn.Module) -> bool:
    """Whether every LoRA layer of ``model`` is a plain linear one (no variant)."""
    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    return bool(layers) and all(
        type(m) is LoraLinear and not m.lora_variant and not m.merged for m in layers
    )


def blocks(names: Sequence[str]) -> list[tuple[str, int, int]]:
    """``(adapter, start, stop)`` of each run of equal names, in order."""
    out: list[tuple[str, int, int]] = []
    for i, name in enumerate(names):
        if out and out[-1][0] == name:
            out[-1] = (name, out[-1][1], i + 1)
        else:
            out.append((name, i, i + 1))
    return out


def _forward(layer: LoraLinear, runs: list[tuple[str, int, int]], x: torch.Tensor, *args, **kw):
    """``layer``'s output with the rows of each run through that run's adapter."""
    result = layer.base_layer(x, *args, **kw)
    # split, not slices: its backward joins the blocks' gradients in one tensor, where each
    # slice's backward would write a zero-filled tensor the size of ``x``
    blocks = x.split([b - a for _, a, b in runs])
    parts = []
    for (name, _, _), rows in zip(runs, blocks, strict=True):
        if name not in layer.lora_A:  # not adapted here: the base alone
            parts.append(result.new_zeros(len(rows), *result.shape[1:]))
            continue
        lora_a = layer.lora_A[name]
        rows = layer.lora_dropout[name](rows.to(lora_a.weight.dtype))
        parts.append((layer.lora_B[name](lora_a(rows)) * layer.scaling[name]).to(result.dtype))
    return result + (parts[0] if len(parts) == 1 else torch.cat(parts))


@contextlib.contextmanager
def adapters_by_row(model: nn.Module, names: Sequence[str]) -> Iterator[None]:
    """Inside it, a forward of ``model`` runs batch row ``i`` through adapter ``names[i]``.

    Rows of one adapter should be adjacent: each run of equal names costs one low-rank pass.
    The adapted layers' ``forward`` is replaced for the duration (not thread-safe, and not
    with gradient checkpointing, which calls ``forward`` again in the backward).
    """
    runs = blocks(names)
    layers = [m for m in model.modules() if isinstance(m, LoraLinear)]
    for layer in layers:
        layer.forward = lambda x, *args, _layer=layer, **kw: _forward(_layer, runs, x, *args, **kw)
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward
