"""What CPU this is, for labelling measured figures (demo tables, benchmarks).

Runs are deterministic per machine, not across CPUs (other BLAS / convolution code paths round
differently), so every recorded figure names the CPU that produced it.
"""
from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpuInfo", "cpu_info", "read_cpuinfo"]

#: the instruction-set flags that decide which code paths run (the memory core's engines, BLAS)
_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
          "avx_vnni", "amx_bf16", "asimd", "sve")


@dataclass(frozen=True)
class CpuInfo:
    """``model_name``: /proc/cpuinfo's "model name" (or platform.processor()); ``vendor``,
    ``family``, ``model``: the CPUID identity (None where unknown); ``flags``: which of the
    flags in ``_FLAGS`` the CPU has; ``cores``: logical CPUs."""

    model_name: str
    vendor: str | None
    family: int | None
    model: int | None
    flags: tuple[str, ...]
    cores: int

    @property
    def label(self) -> str:
        """One line naming the CPU, e.g. ``AMD EPYC (family 25 model 17; avx512f avx512_bf16 ...)``."""
        ident = f"family {self.family} model {self.model}; " if self.family is not None else ""
        return f"{self.model_name} ({ident}{' '.join(self.flags) or 'no SIMD flags read'}; {self.cores} cores)"

    @property
    def key(self) -> str:
        """What identifies the CPU family for "same machine" comparisons: name + family + model."""
        return f"{self.model_name} | family {self.family} | model {self.model}"


def read_cpuinfo() -> dict[str, str]:
    """The first processor's ``key: value`` fields of /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break  # the first processor's block is enough
        name, _, value = line.partition(":")
        fields.setdefault(name.strip(), value.strip())
    return fields


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def cpu_info() -> CpuInfo:
    """The CPU of this machine (Linux /proc/cpuinfo; elsewhere what ``platform`` says)."""
    import os

    cores = os.cpu_count() or 1
    fields = read_cpuinfo()
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    return CpuInfo(
        model_name=fields.get("model name") or platform.processor() or platform.machine() or "unknown CPU",
        vendor=fields.get("vendor_id"),
        family=_int_or_none(fields.get("cpu family")),
        model=_int_or_none(fields.get("model")),
        flags=tuple(f for f in _FLAGS if f in flags),
        cores=cores,
    )
