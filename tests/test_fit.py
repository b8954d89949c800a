"""What ``pslab launch`` refuses before starting anything, and what it leaves behind (issue 16)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grpc_ps.fit import MAX_ROLES_PER_CORE, check_fits, footprint, usable_cores
from grpc_ps.lifeline import OWNER_FILE, claim_run_dir, cleanup_stale_runs
from pslab.scenario import ScenarioError, load_scenario, scenario_from_dict
from pslab.trace import write_json_atomic
from pslab_cli.main import main

ROOT = Path(__file__).resolve().parent.parent
BIG = """\
name: big-16x8
topology: {preset: cluster, nodes: 16, gpus_per_node: 8, servers: 2}
workload: {model: resnet50, batch_size: 32, compute_time: 50ms, io_time: 20ms}
algorithm: {name: sync_ps}
"""


def test_a_cluster_sized_run_is_refused_in_under_a_second(tmp_path: Path) -> None:
    cores = usable_cores()
    if MAX_ROLES_PER_CORE * cores >= 130:
        pytest.skip("this machine has cores enough for 130 roles")
    scenario = tmp_path / "big.yaml"
    scenario.write_text(BIG)
    t0 = time.monotonic()
    p = subprocess.run(
        [sys.executable, "-m", "pslab_cli.main", "launch", str(scenario)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - t0
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr
    assert "130 role processes" in p.stderr and f"{cores} core" in p.stderr
    assert "--force" in p.stderr and "topology.nodes" in p.stderr
    assert elapsed < 1.5  # the interpreter's start included; the check itself is < 0.1 s


def test_memory_is_checked_too() -> None:
    scenario = load_scenario(ROOT / "scenarios" / "quickstart.yaml")
    need = footprint(scenario)
    with pytest.raises(ScenarioError, match="GiB"):
        check_fits(scenario, cores=64, memory=need.memory_bytes)  # 100% > 80%
    check_fits(scenario, cores=64, memory=2 * need.memory_bytes)


@pytest.mark.parametrize(
    "path",
    sorted((ROOT / "scenarios" / "validation").glob("*.yaml"))
    + sorted((ROOT / "scenarios" / "netns").glob("*.yaml")),
    ids=lambda p: p.stem,
)
def test_the_shipped_emulation_scenarios_fit_two_cores(path: Path) -> None:
    check_fits(load_scenario(path), cores=2, memory=8 * 2**30)


def test_cuda_without_a_gpu_is_refused_before_any_process(capsys) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["launch", "--set", "emulation.device=cuda"]) == 2
    assert "emulation.device is 'cuda'" in capsys.readouterr().err


def test_a_rank_past_the_world_is_a_clear_error(tmp_path: Path, capsys) -> None:
    from pslab.scenario import dump_scenario

    scenario = load_scenario(ROOT / "scenarios" / "quickstart.yaml")  # 4 workers
    (tmp_path / "scenario.yaml").write_text(dump_scenario(scenario))
    assert main(["worker", "--run-dir", str(tmp_path), "--rank", "4"]) == 2
    assert "outside this run's world of 4 workers" in capsys.readouterr().err


def test_results_get_the_umask_mode_not_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "metrics.json", {"a": 1})
        write_json_atomic(tmp_path / "secret.json", {"t": "x"}, mode=0o600)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "metrics.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "secret.json").stat().st_mode) == 0o600


def test_stale_run_dirs_of_dead_owners_are_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale, live, unowned = (tmp_path / f"pslab-run-{n}" for n in ("a", "b", "c"))
    for d in (stale, live, unowned):
        d.mkdir()
    (stale / OWNER_FILE).write_text(json.dumps({"pid": dead.pid}))
    claim_run_dir(live)  # ours: alive
    assert cleanup_stale_runs(tmp_path) == [stale]
    assert not stale.exists() and live.exists() and unowned.exists()


def test_a_scenario_from_a_dict_fits_by_the_same_rule() -> None:
    data = {"name": "x", "topology": {"preset": "single_node", "gpus_per_node": 0}}
    data["topology"]["workers_per_node"] = MAX_ROLES_PER_CORE  # + 1 server
    with pytest.raises(ScenarioError, match=f"{MAX_ROLES_PER_CORE + 1} role processes"):
        check_fits(scenario_from_dict(data), cores=1, memory=None)
