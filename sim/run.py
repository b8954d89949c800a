"""Simulate a scenario end to end: plan, cluster, executor, outputs."""

from __future__ import annotations

from pathlib import Path

from pslab.algorithms import build_plan
from pslab.profile import Profile
from pslab.results import write_results
from pslab.scenario import Scenario
from sim.executor import SimExecutor, SimResult
from sim.platform import LocalPlatform, NominalPlatform
from sim.topology import build_cluster


def simulate(scenario: Scenario, base_dir: Path | None = None) -> SimResult:
    plan = build_plan(scenario)
    platform = NominalPlatform(build_cluster(scenario.topology, base_dir))
    return SimExecutor(scenario, plan, platform).run()


def emulated_scenario(scenario: Scenario, profile: Profile) -> Scenario:
    """The scenario as the emulator runs it here: real compute and server updates take
    what this machine measured, not what the scenario says of its nominal cluster."""
    data = scenario.model_dump(mode="json")
    emu = scenario.emulation
    if emu.compute == "real":
        key = profile.compute_key(emu.model, scenario.workload.batch_size)
        data["workload"]["compute_time"] = profile.compute_s[key]
    data["workload"]["server_update_bandwidth"] = 1.0 / max(profile.update_s_per_byte, 1e-15)
    return Scenario.model_validate(data)


def simulate_emulated(
    scenario: Scenario, profile: Profile, start_at: dict[str, float] | None = None
) -> SimResult:
    """Predict the emulator's run of ``scenario`` on the machine ``profile`` describes.

    ``start_at``: when each role began working in the measured run. Processes start
    hundreds of milliseconds apart (interpreter and torch start-up); a synchronous
    variant forgets that at its first barrier, an asynchronous one keeps the phases.
    """
    local = emulated_scenario(scenario, profile)
    plan = build_plan(local)
    platform = LocalPlatform(plan, profile, emulated_compute=local.emulation.compute != "real")
    result = SimExecutor(local, plan, platform, start_at).run()
    result.trace.meta["platform"] = "local"
    return result


def simulate_to(scenario: Scenario, out_dir: Path, base_dir: Path | None = None) -> SimResult:
    result = simulate(scenario, base_dir)
    write_results(out_dir, scenario, result.metrics, result.trace)
    return result
