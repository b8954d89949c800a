"""The sim_scale straggler case, and a dataflow ring, in SimGrid: run by /usr/bin/python3.

SimGrid (Debian's ``python3-simgrid``) is the best-known flow-level
simulator; its lazy max–min solver is what ``sim.network``'s pools are
measured against. This builds the same case as ``benchmarks/sim_scale.py``:
``workers`` hosts on a star, each behind its own split-duplex link, a server
behind a faster one with ``cores`` cores, and one actor per worker that
loads, computes (lognormal), pushes the model to the server, has the server
apply it (one core's exec), and pulls it back. ``sync_ps`` closes a round
once every push is in: one more exec applies the mean, then all pull;
``async_ps`` pulls straight after its own push is applied.

``{"case": "ring", ...}`` is the reference for ``sim.executor``'s dataflow
ring instead: one ring all-reduce over hosts joined in a ring by their own
links (``latency`` per link, one ``bandwidth``), in 2(n-1) steps of one chunk
each, every member's receive buffers posted up front (eager, as NCCL's and
gloo's are), sending step s once its step s-1 chunk is in. SimGrid's pure
max–min model (CM02, no cross traffic, no TCP window) is used, so that the
figures are the fluid model's, to compare exactly.

It runs under the system Python, not the project's venv (the bindings are a
Debian package), takes its parameters as JSON on argv[1] and prints one JSON
line: for the PS case wall and CPU time, simulated time, and the mean worker
iteration time; for the ring each member's end time.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from typing import Any


def main(params: dict[str, Any]) -> dict[str, Any]:
    from simgrid import Actor, Barrier, Comm, Engine, LinkInRoute, NetZone, this_actor

    engine = Engine(["simgrid_ps", "--log=root.thresh:critical"])
    zone = NetZone.create_star_zone("cluster")
    n, iterations = params["workers"], params["iterations"]

    def host(name: str, bandwidth: float, cores: int) -> Any:
        h = zone.create_host(name, 1.0)
        h.core_count = cores
        link = zone.create_split_duplex_link(f"{name}-link", bandwidth)
        link.set_latency(params["latency_s"]).seal()
        zone.add_route(
            h.netpoint, None, None, None, [LinkInRoute(link, LinkInRoute.Direction.UP)], True
        )
        return h.seal()

    server = host("ps0", params["server_bandwidth"], params["server_cores"])
    workers = [host(f"n{i}", params["bandwidth"], 1) for i in range(n)]
    zone.seal()

    sigma = math.sqrt(math.log(1 + params["cv"] ** 2))
    mu = math.log(params["compute_s"]) - sigma**2 / 2
    nbytes, update_s, io_s = int(params["nbytes"]), params["update_s"], params["io_s"]
    sync = params["algo"] == "sync_ps"
    pushed, applied = Barrier(n), Barrier(n)
    starts: list[list[float]] = [[] for _ in range(n)]

    def worker(rank: int) -> None:
        rng = random.Random(rank)
        me = workers[rank]
        for _ in range(iterations):
            starts[rank].append(Engine.clock)
            this_actor.sleep_for(io_s + rng.lognormvariate(mu, sigma))
            Comm.sendto(me, server, nbytes)
            this_actor.set_host(server)  # the server's update, on one of its cores
            this_actor.execute(update_s)
            if sync:
                if pushed.wait():  # the last push of the round applies the mean
                    this_actor.execute(update_s)
                applied.wait()
            this_actor.set_host(me)
            Comm.sendto(server, me, nbytes)
        starts[rank].append(Engine.clock)

    for rank in range(n):
        Actor.create(f"worker-{rank}", workers[rank], worker, rank)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    engine.run()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    warmup = params["warmup"]
    per_iter = [
        (s[iterations - 1] - s[warmup]) / (iterations - 1 - warmup) for s in starts if len(s) > 1
    ]
    return {
        "wall_s": wall,
        "cpu_s": cpu,  # every thread's: SimGrid's Python actors are threads
        "simulated_time_s": Engine.clock,
        "iteration_time_s": sum(per_iter) / len(per_iter),
    }


def ring(params: dict[str, Any]) -> dict[str, Any]:
    from simgrid import Actor, Comm, Engine, LinkInRoute, Mailbox, NetZone

    pure = ["--cfg=network/model:CM02", "--cfg=network/crosstraffic:0", "--cfg=network/TCP-gamma:0"]
    engine = Engine(["simgrid_ring", "--log=root.thresh:critical", *pure])
    zone = NetZone.create_full_zone("ring")
    latency = params["latency"]
    n = len(latency)
    hosts = [zone.create_host(f"h{i}", 1.0).seal() for i in range(n)]
    for j in range(n):
        link = zone.create_split_duplex_link(f"l{j}", params["bandwidth"])
        link.set_latency(latency[j]).seal()
        route = [LinkInRoute(link, LinkInRoute.Direction.UP)]
        zone.add_route(hosts[j].netpoint, hosts[(j + 1) % n].netpoint, None, None, route, True)
    zone.seal()
    steps, chunk = 2 * (n - 1), int(params["nbytes"] / n)
    ends = [0.0] * n

    def member(j: int) -> None:
        me, successor = Mailbox.by_name(f"m{j}"), Mailbox.by_name(f"m{(j + 1) % n}")
        receives = [me.get_async() for _ in range(steps)]
        sends = []
        for step in range(steps):
            sends.append(successor.put_async(j, chunk))
            receives[step][0].wait()
        ends[j] = Engine.clock
        Comm.wait_all(sends)

    for j in range(n):
        Actor.create(f"m{j}", hosts[j], member, j)
    engine.run()
    return {"ends": ends}


if __name__ == "__main__":
    params = json.loads(sys.argv[1])
    print(json.dumps(ring(params) if params.get("case") == "ring" else main(params)), flush=True)
