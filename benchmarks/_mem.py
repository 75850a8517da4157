"""Peak-memory helpers for benchmark child processes (Linux /proc, or CUDA allocator)."""

from __future__ import annotations

from pathlib import Path

import torch


def _status(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1]) / 1024.0  # kB -> MiB
    raise KeyError(field)


def reset_peak(device: torch.device) -> float:
    """Reset the peak counter; return the current resident memory in MiB (the baseline)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated() / 2**20
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    return _status("VmRSS")


def peak_since_reset(device: torch.device) -> float:
    """Peak memory in MiB since :func:`reset_peak` (GPU: allocated; CPU: resident set)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**20
    return _status("VmHWM")
