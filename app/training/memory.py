"""Peak memory of a run: resident set size on CPU, allocated device memory on CUDA."""

from __future__ import annotations

import re
from pathlib import Path

import psutil
import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


class PeakMemory:
    """Measures the peak between start() and peak_bytes(): the kernel's high-water mark where Linux offers a reset."""

    def __init__(self, device: torch.device):
        self.device = device
        self._sampled_peak = 0
        self._kernel_peak = False

    def start(self) -> int:
        """Reset the peak; return the memory in use now (the baseline the run adds to)."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return torch.cuda.memory_allocated(self.device)
        try:
            # Writing 5 resets VmHWM, the kernel's peak RSS, so the peak is this run's and not the process's.
            _CLEAR_REFS.write_text("5")
            self._kernel_peak = True
        except OSError:
            self._kernel_peak = False
        baseline = psutil.Process().memory_info().rss
        self._sampled_peak = baseline
        return baseline

    def sample(self) -> None:
        """Record the current RSS, for platforms without a resettable kernel peak."""
        if self.device.type != "cuda" and not self._kernel_peak:
            self._sampled_peak = max(self._sampled_peak, psutil.Process().memory_info().rss)

    def peak_bytes(self) -> int:
        """The highest memory use since start()."""
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device)
        if self._kernel_peak:
            match = re.search(r"VmHWM:\s+(\d+) kB", _STATUS.read_text())
            if match:
                return int(match.group(1)) * 1024
        self.sample()
        return self._sampled_peak
