"""The hardware catalogue: GPUs and CPU cores a scenario names instead of guessing timings.

``topology.gpu: a100`` gives the device's peak FLOP/s per dtype (what
``compute_time: auto`` divides by), its memory (what the memory check
compares against) and, where the vendor's figures were read, its NVLink and
PCIe bandwidths (the defaults of ``topology.intra_link`` and
``topology.pcie_link``). ``topology.cpu`` does the same for CPU workers, per
core and per cycle.

Sources. Every figure below was read on the page cited beside it, in this
project's session, not recalled; most are third-party pages that reproduce
NVIDIA's data-sheet tables (the vendor PDFs themselves were not readable
here). A figure that could not be read is ``None`` and says so: the scenario
must then give it (a link) or the run is refused with the field to set.

- [H100-T] https://archive-lib.hpctech.co.jp/gpuproduct/nvidia-h100.html: NVIDIA's H100
  SXM table: FP64 34, FP32 67, TF32 989*, BF16/FP16 1,979* TFLOPS ("* with sparsity,
  1/2 lower without"), 80 GB, 3,350 GB/s, "NVLink: 900GB/s, PCIe Gen5: 128GB/s".
- [H100-K] https://glennklockwood.com/garden/processors/h100: dense TF32 494.7, BF16 989.4
  matrix TFLOPS; 900 GB/s NVLink, 128 GB/s PCIe Gen5.
- [A100-K] https://glennklockwood.com/garden/processors/A100 (citing NVIDIA's A100 data
  sheet): FP64 9.7, FP32 19.5, TF32 156, BF16/FP16 312 TFLOPS dense; 40 GB HBM2 or 80 GB
  HBM2e; "300+300 GB/s NVLink", "32+32 GB/s PCIe Gen4".
- [V100-N] https://developer.nvidia.com/programming-tensor-cores-cuda-9-0: "up to 125
  Tensor TFLOPS". [V100-G] https://grokipedia.opelly.me/articles/nvidia-tesla-v100: FP64
  7.8, FP32 15.7 TFLOPS, "up to 32 GB of HBM2". [V100-T]
  https://www.techrival.com/nvidia-volta-tesla-v100-cards-detailed-150w-single-slot-300w-dual-slot-gv100-powered-pcie-accelerators/:
  16 GB HBM2. V100's NVLink and PCIe bandwidths were not read: give ``intra_link`` and
  ``pcie_link``.
- [1080-F] https://fudzilla.net/news/graphics/40701-nvidia-geforce-gtx-1080-is-the-new-performance-king:
  2,560 CUDA cores, boost 1,733 MHz, 8 GB GDDR5X; FP32 peak = 2,560 × 2 × 1.733 GHz =
  8.87 TFLOPS. Its FP16/FP64 rates and PCIe bandwidth were not read (None).
- [CPU-T] https://www.tomshardware.com/reviews/intel-xeon-platinum-8176-scalable-cpu,5120-3.html:
  a Skylake-SP core with two AVX-512 FMA units does "32 double-precision and 64
  single-precision FLOPS per core" per cycle. [CPU-I]
  https://community.intel.com/t5/Software-Tuning-Performance/Calculate-the-Max-Flops-on-Skylake/td-p/1160952
  (and McCalpin on Intel's forum): AVX2 with two 256-bit FMA units, 16 FP64 per cycle
  (so 32 FP32). A CPU's clock is not catalogued: it varies per part and under AVX
  licences, so a scenario gives ``topology.cpu_ghz``.

The achievable fraction (the share of peak a training step sustains) is *not*
a data-sheet figure: 0.4 for GPUs and 0.3 for CPU cores are this project's
assumptions, to be replaced by a measurement (``topology.compute_efficiency``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pslab.schema_errors import did_you_mean

TERA = 1e12
GB = 1e9


@dataclass(frozen=True)
class Gpu:
    """One GPU model: dense peaks per dtype (FLOP/s), memory (bytes), links (bytes/s each way)."""

    name: str
    peak: dict[str, float | None]
    memory: float
    nvlink: float | None  # per direction; None: not read, the scenario gives intra_link
    pcie: float | None  # per direction; None: not read, the scenario gives pcie_link
    source: str
    efficiency: float = 0.4
    notes: str = ""


@dataclass(frozen=True)
class Cpu:
    """One CPU core type: FLOP per cycle per core by dtype; the clock comes from the scenario."""

    name: str
    flop_per_cycle: dict[str, float | None]
    source: str
    efficiency: float = 0.3
    notes: str = field(default="")


def _a100(memory_gb: float) -> Gpu:
    return Gpu(
        name=f"a100 ({memory_gb:.0f} GB)",
        peak={
            "float64": 9.7 * TERA,
            "float32": 19.5 * TERA,
            "tf32": 156 * TERA,
            "bfloat16": 312 * TERA,
            "float16": 312 * TERA,
        },
        memory=memory_gb * GB,
        nvlink=300 * GB,
        pcie=32 * GB,
        source="A100-K",
    )


def _v100(memory_gb: float) -> Gpu:
    return Gpu(
        name=f"v100 ({memory_gb:.0f} GB)",
        peak={"float64": 7.8 * TERA, "float32": 15.7 * TERA, "float16": 125 * TERA},
        memory=memory_gb * GB,
        nvlink=None,
        pcie=None,
        source="V100-N, V100-G, V100-T",
        notes="bfloat16 is not supported by Volta; NVLink and PCIe figures not read",
    )


GPUS: dict[str, Gpu] = {
    "h100": Gpu(
        name="h100 (SXM5)",
        peak={
            "float64": 34 * TERA,
            "float32": 67 * TERA,
            "tf32": 494.7 * TERA,
            "bfloat16": 989.4 * TERA,
            "float16": 989.4 * TERA,
        },
        memory=80 * GB,
        nvlink=450 * GB,
        pcie=64 * GB,
        source="H100-T, H100-K",
    ),
    "a100": _a100(80),
    "a100_40gb": _a100(40),
    "v100": _v100(16),
    "v100_32gb": _v100(32),
    "gtx1080": Gpu(
        name="gtx1080",
        peak={"float32": 2560 * 2 * 1.733e9, "float64": None, "float16": None},
        memory=8 * GB,
        nvlink=None,
        pcie=None,
        source="1080-F",
        notes="no NVLink; FP16/FP64 rates and PCIe bandwidth not read",
    ),
}

CPUS: dict[str, Cpu] = {
    "avx512": Cpu(
        name="avx512 (Skylake-SP class, two FMA units)",
        flop_per_cycle={"float32": 64, "float64": 32},
        source="CPU-T",
    ),
    "avx2": Cpu(
        name="avx2 (Haswell class, two 256-bit FMA units)",
        flop_per_cycle={"float32": 32, "float64": 16},
        source="CPU-I",
    ),
}


def known(catalogue: Mapping[str, object], name: str, what: str) -> str | None:
    """None if ``name`` is catalogued, else the message a user should read."""
    if name in catalogue:
        return None
    names = sorted(catalogue)
    return f"unknown {what} {name!r}{did_you_mean(name, names)}; known: {', '.join(names)}"


def gpu_peak(gpu: Gpu, dtype: str) -> float:
    """The GPU's dense peak for ``dtype``; a figure not read is an error naming it.

    float32 is priced at the FP32 (non-tensor) rate: frameworks leave TF32 matmuls
    off by default, so that is the safe reading of a float32 model."""
    peak = gpu.peak.get(dtype)
    if peak is None:
        raise ValueError(
            f"the catalogue has no {dtype} peak for {gpu.name} ({gpu.notes or 'not read'}); "
            "use another workload.model.dtype or give workload.compute_time"
        )
    return peak


def cpu_peak(cpu: Cpu, dtype: str, ghz: float, cores: float) -> float:
    per_cycle = cpu.flop_per_cycle.get(dtype)
    if per_cycle is None:
        raise ValueError(
            f"the catalogue has no {dtype} rate for {cpu.name}; use float32 or float64, "
            "or give workload.compute_time"
        )
    return per_cycle * ghz * 1e9 * cores
