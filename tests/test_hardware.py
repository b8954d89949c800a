"""The hardware catalogue, compute from FLOPs, the GPU memory check, PCIe and NICs (#17).

Figures are checked against the architectures' known totals (ResNet-50's 4.1
GMAC forward), so a catalogue edit that breaks a count fails here; the topology
tests check the routes the simulator prices, and one closed form shows a PCIe
hop costing what its bandwidth says.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pslab.catalogue import ARCHS, CATALOGUE
from pslab.hardware import GPUS
from pslab.scenario import load_scenario, scenario_from_dict
from pslab_cli.main import main
from sim.run import simulate
from sim.topology import build_cluster

CLUSTER = Path(__file__).resolve().parent.parent / "scenarios" / "a100_cluster.yaml"


def test_catalogue_flops_match_the_architectures_known_totals() -> None:
    r50 = ARCHS["resnet50"]()
    assert sum(r50.tensors) == 25_557_032 and len(r50.tensors) == 161
    assert r50.forward_flops / 2 == pytest.approx(4.09e9, rel=0.01)  # 4.1 GMAC at 224²
    assert ARCHS["vgg16"]().forward_flops / 2 == pytest.approx(15.5e9, rel=0.01)
    assert ARCHS["resnet20"]().forward_flops / 2 == pytest.approx(40.6e6, rel=0.02)
    for name, arch in ARCHS.items():
        assert CATALOGUE[name]() == arch().tensors


def test_auto_compute_is_flops_over_the_catalogued_peak() -> None:
    s = load_scenario(CLUSTER)
    est = s.workload.compute_estimate
    assert est is not None
    a100 = GPUS["a100"]
    flops = 3 * ARCHS["resnet50"]().forward_flops * 64
    assert est.flops_per_batch == pytest.approx(flops)
    assert s.workload.compute_time == pytest.approx(flops / (19.5e12 * a100.efficiency))
    # the catalogue's links became the defaults: NVLink 300 GB/s and PCIe 32 GB/s each way
    assert s.topology.intra_link.bandwidth == 300e9 and s.topology.pcie_link.bandwidth == 32e9


def test_replace_prices_auto_again_and_dump_reads_back_strictly(tmp_path) -> None:
    from pslab.scenario import dump_scenario

    s = load_scenario(CLUSTER)
    doubled = s.replace(workload__batch_size=128)
    assert doubled.workload.compute_time == pytest.approx(2 * s.workload.compute_time)
    f = tmp_path / "scenario.yaml"
    f.write_text(dump_scenario(s))
    assert "B/s" in f.read_text() and load_scenario(f) == s


def test_transformer_family_prices_6_n_per_token() -> None:
    shape = {"layers": 24, "hidden": 2048, "vocab": 50257, "seq": 2048, "heads": 16}
    s = load_scenario(CLUSTER).replace(
        workload__model={"transformer": shape, "dtype": "bfloat16"}, workload__batch_size=4
    )
    est = s.workload.compute_estimate
    params = 12 * 24 * 2048**2  # non-embedding, to leading order
    assert est.flops_per_batch == pytest.approx(6 * params * 2048 * 4, rel=0.1)
    assert est.peak_flops == 312e12


def _error(tmp_path: Path, body: str, capsys) -> str:
    f = tmp_path / "s.yaml"
    f.write_text(textwrap.dedent(body))
    assert main(["sim", str(f)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return " ".join(err.split())


GPU_SCENARIO = """\
    name: g
    topology: {nodes: 1, gpus_per_node: 2, gpu: %s, servers: 0}
    workload: {model: %s, batch_size: %s, compute_time: auto}
    algorithm: {name: allreduce}
    run: {iterations: 4, warmup: 1}
"""


def test_a_model_too_big_for_the_gpu_names_the_field(tmp_path, capsys) -> None:
    err = _error(tmp_path, GPU_SCENARIO % ("gtx1080", "vgg16", 512), capsys)
    assert "workload.model: needs" in err and "gtx1080 holds 8 GB" in err
    assert "lower workload.batch_size" in err


def test_unknown_gpu_suggests_the_closest(tmp_path, capsys) -> None:
    err = _error(tmp_path, GPU_SCENARIO % ("a10O", "resnet50", 32), capsys)
    assert "topology.gpu: unknown gpu 'a10O' (did you mean 'a100'?)" in err


def test_a_dtype_the_catalogue_has_no_figure_for(tmp_path, capsys) -> None:
    spec = "{params: 1M, dtype: bfloat16, flops_per_sample: 1e9}"
    err = _error(tmp_path, GPU_SCENARIO % ("gtx1080", spec, 32), capsys)
    assert "workload.model.dtype: the catalogue has no bfloat16 peak for gtx1080" in err


def test_auto_needs_a_device_and_flops(tmp_path, capsys) -> None:
    err = _error(tmp_path, "name: a\nworkload: {model: resnet50, compute_time: auto}\n", capsys)
    assert "workload.compute_time: auto prices compute on a catalogued device" in err
    assert "set topology.gpu" in err
    err = _error(tmp_path, GPU_SCENARIO % ("a100", "{params: 1M}", 8), capsys)
    assert "workload.model.flops_per_sample:" in err and "pslab model from-torch" in err


def test_transformer_field_paths_are_clean(tmp_path, capsys) -> None:
    body = "name: t\nworkload: {model: {transformer: {layers: 0, hidden: 8, vocab: 8, seq: 8}}}\n"
    err = _error(tmp_path, body, capsys)
    assert "workload.model.transformer.layers: Input should be greater than or equal to 1" in err
    assert "Transformer" not in err


def test_cpu_workers_priced_per_core() -> None:
    topo = {"gpus_per_node": 0, "cpu": "avx512", "cpu_ghz": 2.0, "cores_per_node": 8}
    data = {"name": "c", "topology": {**topo, "workers_per_node": 2}}
    data["workload"] = {"model": "resnet20", "batch_size": 16, "compute_time": "auto"}
    s = scenario_from_dict(data)
    peak = 64 * 2.0e9 * 4  # 4 cores a worker
    assert s.workload.compute_estimate.peak_flops == peak
    assert s.workload.compute_time == pytest.approx(
        3 * ARCHS["resnet20"]().forward_flops * 16 / (peak * 0.3)
    )


def _topo(**extra: object) -> dict:
    base = {"nodes": 2, "gpus_per_node": 2, "inter_link": {"bandwidth": "100Gb/s"}}
    return scenario_from_dict({"name": "t", "topology": {**base, **extra}}).topology


def test_pcie_and_nics_shape_the_routes() -> None:
    c = build_cluster(_topo(gpu="a100", nics_per_node=2))
    within = c.route("n0/gpu0", "n0/gpu1")
    assert [v for _, v in within] == ["n0/nvs", "n0/gpu1"]  # NVLink, never PCIe
    out = [v for _, v in c.route("n0/gpu0", "n1/gpu0")]
    assert out[:2] == ["n0/gpu0/pcie", "n0"] and out[2] in ("n0/nic0", "n0/nic1")
    assert c.graph.edges["n0/gpu0", "n0/gpu0/pcie"]["bandwidth"] == 32e9
    direct = build_cluster(_topo(gpu="a100", nics_per_node=2, gpudirect=True))
    hops = [v for _, v in direct.route("n0/gpu1", "n1/gpu1")]
    assert "n0" not in hops and hops[1] == "n0/nic1"  # GPUDirect: the host is skipped


def test_the_pcie_hop_is_priced_at_its_bandwidth() -> None:
    """One GPU worker pushes and pulls 100 MB over a faster network: the PCIe link is the
    bottleneck, so 1 GB/s against 100 GB/s adds 2 x (0.1 - 0.001) s to an iteration."""

    def comm(pcie: str) -> float:
        data = {
            "name": "p",
            "topology": {
                "nodes": 1,
                "gpus_per_node": 1,
                "inter_link": {"bandwidth": "400GB/s"},
                "pcie_link": {"bandwidth": pcie},
            },
            "workload": {
                "model": {"params": "25M"},
                "compute_time": "10ms",
                "server_update_bandwidth": "1TB/s",
            },
            "algorithm": {"name": "sync_ps"},
            "run": {"iterations": 4, "warmup": 1},
        }
        return simulate(scenario_from_dict(data)).metrics["comm_time_s"]

    slow, fast = comm("1GB/s"), comm("100GB/s")
    assert slow - fast == pytest.approx(2 * (0.1 - 0.001), rel=0.02)


def test_two_nics_both_carry_traffic() -> None:
    r = simulate(load_scenario(CLUSTER).replace(run__iterations=4, run__warmup=1))
    carried = {d["name"]: d["bytes"] for d in r.metrics["links"]}
    assert carried["n0/nic0->sw"] > 0 and carried["n0/nic1->sw"] > 0


def test_gpudirect_needs_pcie_and_nics(tmp_path, capsys) -> None:
    body = "name: d\ntopology: {nodes: 2, gpus_per_node: 2, gpudirect: true}\n"
    err = _error(tmp_path, body, capsys)
    assert "topology: gpudirect needs a pcie_link (or a catalogued gpu) and nics_per_node" in err


def test_smoothing_on_a_catalogued_gpu_runs_at_the_gpu_rate() -> None:
    s = load_scenario(CLUSTER)
    assert s.workload.smoothing_flops == pytest.approx(19.5e12 * GPUS["a100"].efficiency)
    given = s.replace(workload__smoothing_flops=1e9)
    assert given.workload.smoothing_flops == 1e9  # a figure the scenario gives is kept
