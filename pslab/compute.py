"""``compute_time: auto`` and the GPU memory check: a step's cost from the model and device.

A forward+backward step costs 3 × the forward FLOPs (backward is about twice
forward), the forward coming from the catalogue's layer-by-layer count or a
model file's measured figure; its time is FLOPs over the catalogued peak for
the model's dtype times the achievable fraction (pslab/hardware.py). The
memory check adds what one worker keeps on its GPU: weights, gradients, an
fp32 master copy for 16-bit models, the momentum buffer, and the activations
the batch keeps for backward. Both run while the scenario is loaded, so a
model a GPU cannot hold is an exit-2 error naming the field before anything
is built; the result is written back as a plain time plus the estimate it
came from (``workload.compute_estimate``), so the executors never see ``auto``.
"""

from __future__ import annotations

import math

from pslab.catalogue import model_arch, resolve_model
from pslab.hardware import CPUS, GPUS, cpu_peak, gpu_peak
from pslab.scenario import ComputeEstimate, ModelSpec, Scenario
from pslab.schema_errors import field_error
from pslab.units import fmt_bytes, fmt_time

BACKWARD_FACTOR = 3.0
"""Forward + backward ≈ 3 × forward (backward computes two products per forward one)."""


def train_flops_per_sample(scenario: Scenario, source: str) -> float:
    """Forward+backward FLOPs of one sample, or an error saying how to supply them."""
    w = scenario.workload
    if isinstance(w.model, ModelSpec):
        if w.model.flops_per_sample is None:
            raise field_error(
                source,
                "workload.model.flops_per_sample",
                "compute_time: auto needs the model's FLOPs: give flops_per_sample, name a "
                "catalogue model, use {transformer: {layers, hidden, vocab, seq}} or write a "
                "model file with `pslab model from-torch`",
            )
        return w.model.flops_per_sample
    arch = model_arch(w)
    assert arch is not None  # a name or a transformer always has one
    return BACKWARD_FACTOR * arch.forward_flops


def activations_per_sample(scenario: Scenario) -> float:
    m = scenario.workload.model
    if isinstance(m, ModelSpec):
        return m.activations_per_sample or 0.0
    arch = model_arch(scenario.workload)
    return arch.activations if arch is not None else 0.0


def worker_memory(scenario: Scenario) -> float:
    """Bytes one GPU holds: every worker placed on it (workers_per_node > gpus share one)."""
    spec = resolve_model(scenario.workload)
    bpp = spec.bytes_per_param
    per_param = 2 * bpp + (4 if bpp < 4 else 0) + (4 if scenario.algorithm.momentum > 0 else 0)
    acts = activations_per_sample(scenario) * scenario.workload.batch_size * bpp
    topo = scenario.topology
    sharing = math.ceil(topo.workers_each_node / max(topo.gpus_per_node, 1))
    return sharing * (spec.params * per_param + acts)


def _device(scenario: Scenario, source: str) -> tuple[str, float, float, float]:
    """(device name, peak FLOP/s for the model's dtype, efficiency, device memory)."""
    topo = scenario.topology
    dtype = resolve_model(scenario.workload).dtype
    try:
        if topo.gpus_per_node > 0 and topo.gpu is not None:
            gpu = GPUS[topo.gpu]
            eff = topo.compute_efficiency or gpu.efficiency
            return gpu.name, gpu_peak(gpu, dtype), eff, gpu.memory
        if topo.gpus_per_node == 0 and topo.cpu is not None:
            cpu = CPUS[topo.cpu]
            cores = topo.cores_per_node / topo.workers_each_node
            eff = topo.compute_efficiency or cpu.efficiency
            name = f"{cpu.name} x{cores:g} cores at {topo.cpu_ghz} GHz"
            return name, cpu_peak(cpu, dtype, topo.cpu_ghz, cores), eff, math.inf
    except ValueError as e:
        raise field_error(source, "workload.model.dtype", str(e)) from None
    where = "topology.gpu" if topo.gpus_per_node > 0 else "topology.cpu"
    known = ", ".join(sorted(GPUS if topo.gpus_per_node > 0 else CPUS))
    raise field_error(
        source,
        "workload.compute_time",
        f"auto prices compute on a catalogued device: set {where} (known: {known})",
    )


def check_memory(scenario: Scenario, source: str) -> tuple[float, float]:
    """(bytes needed, bytes the GPU has); a model that does not fit is an error."""
    topo = scenario.topology
    if topo.gpu is None or topo.gpus_per_node == 0:
        return worker_memory(scenario), math.inf
    gpu = GPUS[topo.gpu]
    need = worker_memory(scenario)
    if need > gpu.memory:
        acts = activations_per_sample(scenario)
        bpp = resolve_model(scenario.workload).bytes_per_param
        per_sample = fmt_bytes(acts * bpp)
        raise field_error(
            source,
            "workload.model",
            f"needs {fmt_bytes(need)} per GPU (weights, gradients, optimizer state and "
            f"activations at {per_sample} a sample x workload.batch_size "
            f"{scenario.workload.batch_size}), but topology.gpu {topo.gpu} holds "
            f"{fmt_bytes(gpu.memory)}: lower workload.batch_size or pick a larger GPU",
        )
    return need, gpu.memory


def resolve_compute(scenario: Scenario, source: str) -> Scenario:
    """The scenario with ``compute_time: auto`` priced and the GPU memory checked."""
    need, have = check_memory(scenario, source)
    w = scenario.workload
    update: dict[str, object] = {}
    topo = scenario.topology
    if topo.gpu is not None and "smoothing_flops" not in w.model_fields_set:
        gpu = GPUS[topo.gpu]
        fp32 = gpu.peak.get("float32")
        if fp32 is not None:  # the FFT runs on the GPU, not at the 2 GFLOP/s CPU default
            update["smoothing_flops"] = fp32 * (topo.compute_efficiency or gpu.efficiency)
    if w.compute_time == "auto":
        flops = train_flops_per_sample(scenario, source) * w.batch_size
        device, peak, eff, memory = _device(scenario, source)
        seconds = flops / (peak * eff)
        if not math.isfinite(seconds) or seconds <= 0:
            raise field_error(source, "workload.compute_time", f"auto priced {fmt_time(seconds)}")
        update["compute_time"] = seconds
        update["compute_estimate"] = ComputeEstimate(
            device=device,
            flops_per_batch=flops,
            peak_flops=peak,
            efficiency=eff,
            memory_bytes=need,
            device_memory_bytes=None if math.isinf(min(memory, have)) else min(memory, have),
        )
    if not update:
        return scenario
    return scenario.model_copy(update={"workload": w.model_copy(update=update)})
