"""The simulator's model of this machine: cold ops and gloo rings priced from a profile."""

from __future__ import annotations

import statistics
from collections.abc import Iterator

import pytest
import simpy
from conftest import zero_cost_profile

from pslab.compare import op_durations
from pslab.profile import Profile
from pslab.scenario import load_scenario
from sim.network import SMALL_MESSAGE
from sim.platform import Warmth
from sim.run import PHASE_FORGOTTEN, simulate_emulated

MS = 1e-3


def test_warmth_ramps_from_hot_to_cold_over_the_idle_gap() -> None:
    env = simpy.Environment()
    warmth, ramp = Warmth(env, lambda _who: 0.0), 10 * MS
    assert warmth.extra("p", "compute", 2 * MS, ramp) == 2 * MS  # never ran: cold
    done = warmth.ran("p", "compute", env.timeout(1 * MS))
    env.run(until=done)
    assert warmth.extra("p", "compute", 2 * MS, ramp) == 0.0  # back to back: hot
    env.run(until=6 * MS)
    assert abs(warmth.extra("p", "compute", 2 * MS, ramp) - 1 * MS) < 1e-12  # half the ramp
    assert warmth.extra("q", "compute", 2 * MS, ramp) == 2 * MS  # another process's is its own
    assert warmth.extra("p", "compute", 2 * MS, 0.0) == 0.0  # never cold here


def test_other_processes_work_in_the_gap_cools_an_op_up_to_its_share() -> None:
    """0.4 of the cold extra, built up over 2 ms of the others' CPU, on top of the idle
    gap's part; the process's own work meanwhile cools nothing."""
    env = simpy.Environment()
    cpu = {"p": 0.0, "q": 0.0}
    warmth = Warmth(env, lambda who: sum(v for k, v in cpu.items() if k != who), 0.4, 2 * MS)
    cold, ramp = 1 * MS, 10 * MS
    env.run(until=warmth.ran("p", "rpc", env.timeout(1 * MS)))
    env.run(until=2 * MS)  # 1 ms idle: 0.1 of the extra
    assert warmth.extra("p", "rpc", cold, ramp) == pytest.approx(0.1 * MS)
    cpu["p"] += 5 * MS  # its own work
    assert warmth.extra("p", "rpc", cold, ramp) == pytest.approx(0.1 * MS)
    cpu["q"] += 1 * MS  # half the build-up: 0.2 more
    assert warmth.extra("p", "rpc", cold, ramp) == pytest.approx(0.3 * MS)
    cpu["q"] += 3 * MS  # past it: the whole share
    assert warmth.extra("p", "rpc", cold, ramp) == pytest.approx(0.5 * MS)
    env.run(until=9 * MS)  # 7 ms idle and the share: fully cold, no more
    assert warmth.extra("p", "rpc", cold, ramp) == pytest.approx(1 * MS)


def test_others_cooling_raises_a_real_compute_prediction_where_processes_interleave(
    root,
) -> None:
    """Four real-compute workers and a server on two cores: with the others' cooling
    measured, every op after a load meets colder caches, so the iteration is longer."""
    figures = {
        "compute_s": {"digits_mlp@32": 0.3 * MS},
        "compute_cold_s": {"digits_mlp@32": 0.9 * MS},
        "cold_ramp_s": 20 * MS,
        "rpc_cpu_s": 0.5 * MS,
        "rpc_cold_cpu_s": 0.5 * MS,
    }
    plain = _ops("sync_ps_real.yaml", zero_cost_profile(**figures))
    cooled = _ops(
        "sync_ps_real.yaml",
        zero_cost_profile(**figures, cold_by_others_share=0.5, cold_by_others_cpu_s=1 * MS),
    )
    assert cooled["compute"] > plain["compute"] + 0.1 * MS
    assert cooled["iteration"] > plain["iteration"]


def _ops(scenario_file: str, profile: Profile, *overrides: str) -> dict[str, float]:
    scenario = load_scenario(f"scenarios/validation/{scenario_file}", list(overrides))
    run = scenario.run
    return op_durations(simulate_emulated(scenario, profile).trace, run.warmup, run.iterations)


def test_real_compute_pays_its_cold_figure_after_a_load(root) -> None:
    profile = zero_cost_profile(
        compute_s={"digits_mlp@32": 1 * MS},
        compute_cold_s={"digits_mlp@32": 3 * MS},
        cold_ramp_s=10 * MS,
    )
    one = ("topology.workers_per_node=1", "run.iterations=6")
    after_load = _ops("sync_ps_real.yaml", profile, *one, "workload.io_time=20ms")
    assert abs(after_load["compute"] - 3 * MS) < 0.01 * MS
    back_to_back = _ops("sync_ps_real.yaml", profile, *one, "workload.io_time=0")
    assert abs(back_to_back["compute"] - 1 * MS) < 0.01 * MS


def test_a_ring_takes_what_its_group_measured_at_its_size(root) -> None:
    """Four gloo members on two cores: the ring's time is the measured all-reduce of that
    group and size, not two members' per-step figure times 2(n-1) steps."""
    measured = 8 * MS
    profile = zero_cost_profile(
        allreduce_overhead_s=0.1 * MS,
        allreduce_s={"4x19240": measured},
        allreduce_cpu_s={"4x19240": 1 * MS},  # 4 members on 2 cores: 2 ms of the 8
    )
    ops = _ops("allreduce_real.yaml", profile, "emulation.compute=emulated")
    assert abs(ops["allreduce"] - measured) < 0.05 * measured
    two = _ops(
        "allreduce_real.yaml", profile, "emulation.compute=emulated", "topology.workers_per_node=2"
    )
    assert two["allreduce"] < 0.2 * MS  # no figure for two: two members' tiny all-reduce


def test_an_asynchronous_prediction_starts_every_worker_together(root) -> None:
    """The launcher's start gate begins every worker at once: that run is the prediction.
    Where the pushes meet depends on the workers' phase, so the range over other phases is
    reported; a barrier forgets the phase."""
    profile = zero_cost_profile(
        rpc_cpu_s=2 * MS,
        send_cpu_s_per_byte=1e-9,
        recv_cpu_s_per_byte=1e-9,
        rpc_overhead_s=0.2 * MS,
    )
    async_ps = load_scenario("scenarios/validation/async_ps_emulated.yaml")
    result = simulate_emulated(async_ps, profile)
    low, high = async_low, async_high = result.metrics["iteration_time_s_phases"]
    assert result.trace.meta["phases"] == 8
    together = simulate_emulated(async_ps, profile, phases=1).metrics["iteration_time_s"]
    assert result.metrics["iteration_time_s"] == together
    assert low <= together <= high and low < high  # this scenario's phase matters
    assert set(result.metrics["op_time_s"]) >= {"push", "pull", "compute", "load"}
    sync_ps = load_scenario("scenarios/validation/sync_ps_emulated.yaml")
    result = simulate_emulated(sync_ps, profile)
    assert result.trace.meta["phases"] == 2  # the second phase matched the first: stop
    low, high = result.metrics["iteration_time_s_phases"]
    assert abs(high - low) <= PHASE_FORGOTTEN * high
    assert high - low < 0.1 * (async_high - async_low)


def test_a_stream_entered_idle_pays_its_cold_cost_per_byte(root) -> None:
    # one async worker, one server, 2M parameters (8 MB), a 1 ms ramp: every push and pull
    # here comes after a longer gap, so its receiver pays the whole cold cost per byte: the
    # server for a push, the worker for a pull
    nbytes = 8_000_000
    one = ("topology.workers_per_node=1", "run.iterations=6", "workload.compute_time=0")
    cold = zero_cost_profile(recv_cold_cpu_s_per_byte=1e-9, rpc_cold_ramp_s=1 * MS)
    ops = _ops("async_ps_emulated.yaml", cold, *one, "workload.io_time=20ms")
    assert ops["push"] == pytest.approx(nbytes * 1e-9, rel=1e-5)
    assert ops["pull"] == pytest.approx(nbytes * 1e-9, rel=1e-5)
    free = _ops("async_ps_emulated.yaml", zero_cost_profile(rpc_cold_ramp_s=1 * MS), *one)
    assert free["push"] < 1e-6 and free["pull"] < 1e-6


def test_a_workers_update_pays_its_fixed_and_its_per_byte_cost(root) -> None:
    """Calibrated with the caches swept (grpc_ps.calibrate.measure_worker_update): one
    worker alone, so the update's span is its CPU."""
    one = ("topology.workers_per_node=1", "workload.model.params=1M", "run.iterations=6")
    fixed, per_byte = 0.2 * MS, 1e-9
    ops = _ops(
        "local_sgd_emulated.yaml",
        zero_cost_profile(worker_update_s=fixed, worker_update_s_per_byte=per_byte),
        *one,
    )
    assert ops["update"] == pytest.approx(fixed + 4e6 * per_byte, rel=1e-9)


def test_an_all_reduces_mean_is_a_division_on_each_members_core(root) -> None:
    """The emulator divides the all-reduced sum by the group's size in place, inside the op:
    two members on two cores each pay all of it, side by side."""
    two = ("run.iterations=6",)
    per_byte = 1e-9
    summed = _ops("allreduce_2w_emulated.yaml", zero_cost_profile(), *two)
    mean = _ops(
        "allreduce_2w_emulated.yaml", zero_cost_profile(mean_scale_s_per_byte=per_byte), *two
    )
    assert mean["allreduce"] - summed["allreduce"] == pytest.approx(8e6 * per_byte, rel=1e-9)


@pytest.mark.parametrize("compute", ["real", "emulated"])
def test_a_workers_update_is_warm_right_after_a_real_compute(root, compute: str) -> None:
    """A step right after a real forward+backward meets the process's tensor caches warm
    and costs its back-to-back figure; after a sleep longer than the ramp (an emulated
    compute, a load), its cold one. One worker, so a span is its CPU."""
    cold, hot = 0.3 * MS, 0.02 * MS
    profile = zero_cost_profile(
        worker_update_s=cold,
        worker_update_hot_s=hot,
        worker_update_hot_s_per_byte=0.0,
        cold_ramp_s=2 * MS,
        compute_s={"digits_mlp@32": 1 * MS},
        compute_cold_s={"digits_mlp@32": 1 * MS},
    )
    ops = _ops(
        "local_sgd_real.yaml",
        profile,
        "topology.workers_per_node=1",
        f"emulation.compute={compute}",
        "algorithm.tau=1000",  # no averaging: every update is a local step after compute
        "run.iterations=8",
    )
    assert ops["update"] == pytest.approx(hot if compute == "real" else cold, rel=1e-9)


@pytest.mark.parametrize("overlap", [0.0, 0.5, 1.0])
def test_a_lone_streams_ends_overlap_as_calibrated(root, overlap: float) -> None:
    """A push's client and server ends: the larger plus (1 - overlap) of the smaller, as
    calibration reads the overlap from a lone big push's and pull's wall times."""
    nbytes = 8_000_000
    one = ("topology.workers_per_node=1", "run.iterations=6", "workload.compute_time=0")
    profile = zero_cost_profile(send_cpu_s_per_byte=1e-9, server_recv_cpu_s_per_byte=2e-9)
    ops = _ops(
        "async_ps_emulated.yaml", profile.model_copy(update={"stream_overlap": overlap}), *one
    )
    send, recv = nbytes * 1e-9, nbytes * 2e-9
    assert ops["push"] == pytest.approx(send + recv - overlap * send, rel=1e-6)


def test_a_loss_report_and_its_answer_are_one_rpc(root) -> None:
    """A synchronous loss report is priced as two transfers, the request and, once the
    round's reports are in, the answer; the profile's RPC figures are per round trip, so
    together they cost one RPC's fixed CPU and wait, not two."""
    cpu, wait = 2 * MS, 1 * MS
    profile = zero_cost_profile(rpc_cpu_s=cpu, rpc_overhead_s=wait, stream_overlap=0.0)
    ops = _ops(
        "leader_sgd_real.yaml",
        profile,
        "topology.workers_per_node=1",
        "algorithm.groups=1",
        "emulation.compute=emulated",
        "run.iterations=8",
    )
    assert ops["report_loss"] == pytest.approx(cpu + wait, rel=1e-9)


def test_calibration_reads_the_overlap_from_a_streams_extra_wall() -> None:
    from grpc_ps.probes import stream_overlap

    assert stream_overlap(13.0, 4.0, 9.0) == 0.0  # the sum (or more): the ends took turns
    assert stream_overlap(9.0, 4.0, 9.0) == 1.0  # the larger alone: side by side
    assert stream_overlap(11.0, 4.0, 9.0) == pytest.approx(0.5)
    assert stream_overlap(1.0, 0.0, 9.0) == 1.0  # nothing to overlap: as before


@pytest.mark.parametrize("share", [1.0, 0.5])
def test_a_busy_process_loses_its_locks_hand_overs(root, share: float) -> None:
    """Two pushes reach the server at once: the first runs as it would alone, the second
    first holds the server's lock without a core for (1/share - 1) of its work. So a round
    takes the server's work plus that, and its CPU stays the work alone."""
    two = ("topology.workers_per_node=2", "run.iterations=6", "workload.compute_time=0")
    profile = zero_cost_profile(server_recv_cpu_s_per_byte=1e-9, contended_lock_share=share)
    scenario = load_scenario(
        "scenarios/validation/sync_ps_emulated.yaml", [*two, "workload.io_time=0"]
    )
    result = simulate_emulated(scenario, profile)
    push = 8_000_000 * 1e-9  # 2M parameters, float32
    # the first pusher's pull request reaches the server beside the second push: its lock
    # hands over for the request's length too
    request = SMALL_MESSAGE * 1e-9
    iteration = push * (1 + 1 / share) + request / share
    assert result.metrics["iteration_time_s"] == pytest.approx(iteration, rel=1e-6)
    cpu = result.metrics["cpu_time_by_process_s"]["ps-0"]
    assert cpu == pytest.approx((2 * push + request) * 6)


def test_a_busy_servers_share_counts_only_what_its_clients_left_it() -> None:
    from grpc_ps.probes import contended_share

    assert contended_share(0.7, 0.8, 2) == pytest.approx(0.7)  # a core was free for it
    assert contended_share(0.3, 0.5, 1) == pytest.approx(0.6)  # the clients left it half
    assert contended_share(0.5, 0.5, 1) == 1.0  # it took all they left: the machine held it


@pytest.mark.parametrize(("beside", "end"), [("native_work", 1.0), ("process_work", 2.0)])
def test_a_gloo_collective_leaves_its_process_lock_free(beside: str, end: float) -> None:
    """torch's c10d bindings release the interpreter lock for a collective: a process's
    gloo work and its Python work run side by side on two cores, and both count as its
    CPU; two Python works in one process take turns on its lock."""
    from pslab.algorithms import build_plan
    from sim.platform import LocalPlatform

    plan = build_plan(load_scenario("scenarios/validation/allreduce_2w_emulated.yaml"))
    env = simpy.Environment()
    net = LocalPlatform(plan, zero_cost_profile(), emulated_compute=True).network(env, plan)
    works = [net.process_work("worker-0", 1.0), getattr(net, beside)("worker-0", 1.0)]
    env.run(until=env.all_of(works))
    assert env.now == pytest.approx(end)
    assert net.carried_each("proc:")["worker-0"] == pytest.approx(2.0)


@pytest.mark.parametrize(("first", "second"), [(0.1, 0.1), (0.001, 0.1)])
def test_lock_hand_overs_last_while_the_threads_contend(first: float, second: float) -> None:
    """A process's lock is handed between its threads while two works contend, so a work
    that finds another in progress first holds the lock without a core for the lesser of
    the two (times 1/share - 1). Two 0.1 s works at share 0.5: the second's 0.1 s of
    hand-overs share the lock with the first (both done at 0.2 s), then it runs (0.3 s). A
    1 ms request in flight costs a 0.1 s push 1 ms of hand-overs, not 0.1 s."""
    from pslab.algorithms import build_plan
    from sim.platform import LocalPlatform

    plan = build_plan(load_scenario("scenarios/validation/sync_ps_emulated.yaml"))
    env = simpy.Environment()
    profile = zero_cost_profile(contended_lock_share=0.5)
    net = LocalPlatform(plan, profile, emulated_compute=True).network(env, plan)
    net.process_work("ps-0", first)
    done = net.process_work("ps-0", second)
    env.run(until=done)
    assert env.now == pytest.approx(2 * first + second)
    assert net.carried_each("proc:")["ps-0"] == pytest.approx(first + second)


def test_a_communicators_sums_and_copies_are_its_cpu(root) -> None:
    """The emulator's communicator adds every part after the first into its total and
    copies each slice twice (the sum into its buffer, its offer): two members a group,
    so per iteration one add and two copies of the model, in its own process."""
    six = ("run.iterations=6",)
    add, copy = 1e-9, 0.5e-9
    free = zero_cost_profile()
    priced = zero_cost_profile(
        slice_add_s_per_byte_at={8_000_000: add}, slice_copy_s_per_byte_at={8_000_000: copy}
    )

    def comm_cpu(profile: Profile) -> float:
        scenario = load_scenario("scenarios/validation/layered_sgd_emulated.yaml", list(six))
        return simulate_emulated(scenario, profile).metrics["cpu_time_by_process_s"]["comm-0"]

    assert comm_cpu(free) == 0.0
    assert comm_cpu(priced) == pytest.approx(6 * 8e6 * (add + 2 * copy), rel=1e-9)


def test_a_fetch_request_takes_the_registry_from_a_publication(root) -> None:
    """Synchronous Leader SGD: after a round's reports, its leader publishes while the three
    others' fetch requests reach the registry. The requests are work too, on the cores and
    the registry's lock, so the publication takes longer than it would alone (3.47 ms here
    when a fetch was priced as its reply alone). A fetch, request and reply, is still one
    RPC, like a loss report: the registry's CPU is half an RPC's per call it serves."""
    cpu, wait = 2 * MS, 1 * MS
    profile = zero_cost_profile(rpc_cpu_s=cpu, rpc_overhead_s=wait, stream_overlap=0.0)
    scenario = load_scenario(
        "scenarios/validation/leader_sgd_real.yaml",
        ["algorithm.groups=1", "emulation.compute=emulated"],
    )
    result = simulate_emulated(scenario, profile)
    run = scenario.run
    ops = op_durations(result.trace, run.warmup, run.iterations)
    assert ops["publish"] > 1.2 * (cpu + wait)  # alone: a whole RPC's CPU and wait
    calls = sum(s.name in ("report_loss", "publish", "fetch") for s in result.trace.spans)
    registry = result.metrics["cpu_time_by_process_s"]["registry"]
    assert registry == pytest.approx(calls * cpu / 2, rel=1e-9)


def test_a_broadcast_asked_before_the_offer_pays_only_its_reply_after_it(root) -> None:
    """Layered SGD: a worker asks its communicator for the broadcast once its reduce is in,
    and the communicator answers when its exchange with the other communicator is done.
    The request was served while it waited, so after the offer only the reply leg is left,
    half an RPC (2.5 ms here with the two members' replies sharing their communicator; the
    whole RPC after the offer, as before, took 5.0)."""
    cpu, wait = 2 * MS, 1 * MS
    profile = zero_cost_profile(
        rpc_cpu_s=cpu, rpc_overhead_s=wait, stream_overlap=0.0, allreduce_s_per_byte=2e-7
    )
    scenario = load_scenario(
        "scenarios/validation/layered_sgd_real.yaml", ["emulation.compute=emulated"]
    )
    spans = simulate_emulated(scenario, profile).trace.spans
    offered = {
        (s.role, s.iteration): s.end
        for s in spans
        if s.name == "broadcast" and s.role.startswith("comm-")
    }
    after = [
        s.end - offered[f"comm-{int(s.role.split('-')[1]) // 2}", s.iteration]
        for s in spans
        if s.name == "broadcast" and s.role.startswith("worker-")
    ]
    assert after and min(after) > 0  # every worker asked before its communicator offered
    assert statistics.median(after) < 0.9 * (cpu + wait)


def test_a_held_pull_pays_only_its_reply_after_the_round_closes(root) -> None:
    """BSP: a worker that pushed before the round's last one has its pull request held at
    the server, which served the request meanwhile; when the round closes only the reply
    leg is left, half an RPC. The last pusher's pull is answered at once, the whole RPC.
    (Before requests were priced, every pull took 4.0 ms after the close here.)"""
    cpu, wait = 2 * MS, 1 * MS
    profile = zero_cost_profile(rpc_cpu_s=cpu, rpc_overhead_s=wait, stream_overlap=0.0)
    scenario = load_scenario(
        "scenarios/validation/sync_ps_emulated.yaml",
        [
            "topology.workers_per_node=2",
            "workload.compute_time={dist: lognormal, mean: 30ms, cv: 0.3}",
            "run.iterations=10",
        ],
    )
    spans = simulate_emulated(scenario, profile, phases=1).trace.spans
    closed: dict[int, float] = {}
    for s in spans:
        if s.role == "ps-0" and s.name == "apply":
            closed[s.iteration] = max(closed.get(s.iteration, 0.0), s.end)
    after = [s.end - closed[s.iteration] for s in spans if s.name == "pull"]
    assert min(after) < cpu + wait <= max(after)


def _ring(profile: Profile, arrivals: list[float]) -> tuple[list[float], float]:
    """A step-by-step ring of allreduce_emulated's four workers, each arriving at its time:
    when each member leaves, and the CPU its members spent."""
    from pslab.algorithms import build_plan
    from sim.platform import LocalPlatform
    from sim.step_ring import StepRing

    plan = build_plan(load_scenario("scenarios/validation/allreduce_emulated.yaml"))
    env = simpy.Environment()
    net = LocalPlatform(plan, profile, emulated_compute=True).network(env, plan)
    members = [f"worker-{j}" for j in range(len(arrivals))]
    ring = StepRing(net, members, plan.model.nbytes)
    ends = [0.0] * len(arrivals)

    def member(j: int, at: float) -> Iterator[simpy.Event]:
        yield env.timeout(at)
        yield ring.arrive(j)
        ends[j] = env.now

    for j, at in enumerate(arrivals):
        env.process(member(j, at))
    env.run()
    return ends, sum(net.carried_each("proc:").values())


def _ring_profile(wall: float, cpu: float) -> Profile:
    key = "4x8000000"  # allreduce_emulated: four members, a 2M-parameter model
    return zero_cost_profile(allreduce_s={key: wall}, allreduce_cpu_s={key: cpu})


def test_a_ring_of_members_arriving_together_takes_its_calibrated_time() -> None:
    """Four members on two cores, 6 ms of CPU each in a 20 ms all-reduce: each step the
    four share the cores for their chunks, then for the hand-offs that make up the rest.
    Together they take the calibration's 20 ms and leave together; the CPU is theirs."""
    ends, cpu = _ring(_ring_profile(20 * MS, 6 * MS), [0.0] * 4)
    assert ends == pytest.approx([20 * MS] * 4, rel=1e-9)
    # 4 x 6 ms of chunks, and 6 steps x 4 hand-offs of (20 - 12) / 6 ms x 2 / 4 of a core
    assert cpu == pytest.approx(4 * 6 * MS + 8 * MS * 2, rel=1e-9)


def test_a_ring_works_before_its_last_member_arrives() -> None:
    """gloo's ring is a dataflow: three members arrive 30 ms before the fourth and send what
    they can meanwhile (member 2 its whole reduce-scatter, which needs nothing of member 3),
    so the ring ends sooner after the last arrival than the 20 ms of a ring that waits for
    it (15.75 ms here), member 2 first, and the members leave one by one."""
    late = 30 * MS
    ends, cpu = _ring(_ring_profile(20 * MS, 6 * MS), [0.0, 0.0, 0.0, late])
    after = [end - late for end in ends]
    assert max(after) < 0.8 * 20 * MS
    assert min(after) == after[2]
    assert len(set(after)) == 4
    assert cpu == pytest.approx(4 * 6 * MS + 8 * MS * 2, rel=1e-9)  # the same work, earlier


def test_a_straggling_ring_member_finds_the_others_steps_done(root) -> None:
    """allreduce-emulated with lognormal compute (cv 0.3): the members reach the all-reduce
    apart. A ring that started at the last arrival would keep every member there for its
    wait plus the calibration's 20 ms; the early members' steps make it shorter."""
    scenario = load_scenario(
        "scenarios/validation/allreduce_emulated.yaml",
        ["workload.compute_time={dist: lognormal, mean: 30ms, cv: 0.3}", "run.iterations=12"],
    )
    result = simulate_emulated(scenario, _ring_profile(20 * MS, 6 * MS), phases=1)
    starts: dict[int, list[float]] = {}
    spans = [s for s in result.trace.spans if s.name == "allreduce"]
    for span in spans:
        starts.setdefault(span.iteration, []).append(span.start)
    waits = [max(starts[s.iteration]) - s.start for s in spans]
    assert statistics.mean(waits) > 2 * MS  # they do arrive apart
    beyond = [s.dur - wait for s, wait in zip(spans, waits, strict=True)]
    assert max(beyond) < 20 * MS * (1 + 1e-9)
    assert statistics.mean(beyond) < 0.95 * 20 * MS
