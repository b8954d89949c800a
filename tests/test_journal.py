"""A journal that proves itself, and checkpoints that are checked (issue 19).

Every way a shard's state on disk can be wrong (a flipped byte, a record missing, a
truncated, empty, damaged or NaN checkpoint, one written under another policy) stops the
resume with a CheckpointError naming the file and what would be lost, and changes nothing
on disk; only the operator's ``discard_after`` resumes past a bad record, and it keeps what
it drops. Pushes go over real gRPC on 127.0.0.1.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from grpc_ps.checkpoint import CHECKPOINT, CheckpointError, Journal
from grpc_ps.client import PSClient
from grpc_ps.journal import CRC, HEAD
from grpc_ps.pb import ps_pb2 as pb
from grpc_ps.server import ParameterServerServicer, run_server
from pslab.policies import StalenessPolicy

N = 1000
X0 = np.linspace(-1, 1, N, dtype=np.float32)
RECORD = HEAD + 4 * N + CRC.size  # one push's record


def shard(
    directory: Path, aggregate: bool = False, x0: np.ndarray = X0, **kw
) -> ParameterServerServicer:
    journal = Journal(directory, every_versions=100, **kw)
    policy = StalenessPolicy(1, aggregate=aggregate)
    n = len(x0)
    return ParameterServerServicer(0, 0, n, 1, policy, 0.25, initial=x0, journal=journal)


def push(servicer: ParameterServerServicer, iterations: range) -> None:
    with (
        run_server(servicer, grace=None) as (_, port),
        PSClient([f"127.0.0.1:{port}"], 0, 1, servicer.length) as c,
    ):
        c.register()
        for i in iterations:
            grad = np.random.default_rng(i).standard_normal(servicer.length)
            c.push(grad.astype(np.float32), i, computed_on=i)


def params(servicer: ParameterServerServicer) -> tuple[bytes, int]:
    assert servicer._params is not None
    return servicer._params.tobytes(), servicer.policy.version


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def flip(path: Path, at: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[at] ^= 0x40
    path.write_bytes(bytes(raw))


def test_a_flipped_byte_stops_the_resume_naming_the_file_record_and_loss(tmp_path) -> None:
    push(shard(tmp_path), range(6))
    journal = tmp_path / "journal-1.log"
    assert journal.stat().st_size == 6 * RECORD
    flip(journal, 2 * RECORD + HEAD + 17)  # in record 2's data
    before = files(tmp_path)
    with pytest.raises(CheckpointError) as err:
        shard(tmp_path)
    message = str(err.value)
    assert "journal-1.log" in message and "record 2 " in message and "data fails its CRC" in message
    assert f"{4 * RECORD} bytes" in message and "about 4 pushes" in message
    assert "--discard-after 1" in message
    assert files(tmp_path) == before  # nothing truncated, nothing rewritten


def test_a_missing_record_is_a_gap(tmp_path) -> None:
    push(shard(tmp_path), range(4))
    journal = tmp_path / "journal-1.log"
    raw = journal.read_bytes()
    journal.write_bytes(raw[:RECORD] + raw[2 * RECORD :])  # record 1 gone, every CRC intact
    with pytest.raises(CheckpointError, match=r"record 1 .*sequence number 2, expected 1"):
        shard(tmp_path)


def test_a_damaged_header_is_caught_before_its_length_is_trusted(tmp_path) -> None:
    push(shard(tmp_path), range(3))
    flip(tmp_path / "journal-1.log", RECORD + 30)  # record 1's size field
    with pytest.raises(CheckpointError, match=r"record 1 .*header fails its CRC"):
        shard(tmp_path)


def test_discard_after_resumes_from_the_good_records_and_keeps_the_rest(tmp_path) -> None:
    reference = shard(tmp_path / "ref")
    push(reference, range(2))
    push(shard(tmp_path / "d"), range(6))
    journal = tmp_path / "d" / "journal-1.log"
    tail = journal.read_bytes()[2 * RECORD :]
    flip(journal, 3 * RECORD + HEAD)
    resumed = shard(tmp_path / "d", discard_after=1)
    assert params(resumed) == params(reference)
    kept = tmp_path / "d" / "discarded-1-2.log"
    assert kept.read_bytes()[:RECORD] == tail[:RECORD]  # record 2 as it was
    assert len(kept.read_bytes()) == len(tail)
    push(resumed, range(2, 4))  # it carries on, and resumes cleanly again
    push(reference, range(2, 4))
    assert params(shard(tmp_path / "d")) == params(reference)


@pytest.mark.parametrize("torn", ["short", "zeros"])
def test_a_torn_tail_alone_is_dropped(tmp_path, torn) -> None:
    live = shard(tmp_path)
    push(live, range(3))
    journal = tmp_path / "journal-1.log"
    record = journal.read_bytes()[:RECORD]
    with journal.open("ab") as f:  # a record the crash cut short: never acknowledged
        f.write(record[: RECORD - 10] if torn == "short" else bytes(RECORD))
    assert params(shard(tmp_path)) == params(live)
    # replayed into a checkpoint: a fresh journal, the old one with its tail gone
    assert not journal.exists() and (tmp_path / "journal-2.log").stat().st_size == 0


def _rewrite(path: Path, **changes: object) -> None:
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    with path.open("wb") as f:
        np.savez(f, **arrays)


def _empty(p: Path) -> None:
    p.write_bytes(b"")


def _truncated(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _bad_crc(p: Path) -> None:
    flip(p, p.read_bytes().index(X0[:8].tobytes()) + 5)  # inside the stored params


def _nan(p: Path) -> None:
    _rewrite(p, params=np.full(N, np.nan, np.float32))


def _old(p: Path) -> None:
    with np.load(p) as z:
        arrays = {k: z[k] for k in z.files if k not in ("policy", "next_seq")}
    with p.open("wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (_empty, "not a readable checkpoint"),
        (_truncated, "not a readable checkpoint"),
        (_bad_crc, "not a readable checkpoint"),
        (_nan, "params holds NaN or Inf"),
        (_old, "no policy, next_seq"),
    ],
    ids=["empty", "truncated", "bad-crc", "nan", "older-format"],
)
def test_a_bad_checkpoint_is_a_clear_error(tmp_path, damage, why) -> None:
    push(shard(tmp_path), range(2))
    damage(tmp_path / CHECKPOINT)
    before = files(tmp_path)
    with pytest.raises(CheckpointError, match=why) as err:
        shard(tmp_path)
    assert str(tmp_path / CHECKPOINT) in str(err.value)
    assert files(tmp_path) == before


def test_a_checkpoint_of_another_policy_or_shape_is_refused(tmp_path) -> None:
    push(shard(tmp_path), range(2))  # async (ASP)
    with pytest.raises(CheckpointError, match="policy 'aggregate=False bound=None'"):
        shard(tmp_path, aggregate=True)  # sync_ps resuming an async journal
    with pytest.raises(CheckpointError, match=r"params is float32 \(1000,\), the shard"):
        shard(tmp_path, x0=X0[:500])


def test_resume_streams_the_journal(tmp_path) -> None:
    """A journal of 8 model-sized pushes resumes holding two models (the parameters and
    the record being replayed) and a block's temporaries, not the journal."""
    n = 1 << 21  # 8 MiB of parameters
    x0 = np.zeros(n, np.float32)
    live = shard(tmp_path, x0=x0)
    push(live, range(8))
    assert (tmp_path / "journal-1.log").stat().st_size > 8 * 4 * n
    tracemalloc.start()
    resumed = shard(tmp_path, x0=x0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert params(resumed) == params(live)
    print(f"\nresume of {8 * 4 * n >> 20} MiB of journal peaked at {peak / (4 * n):.2f}x the model")
    assert peak <= 2.25 * 4 * n, f"resume peaked at {peak / (4 * n):.2f}x the model"
    stats = resumed.Stats(pb.StatsRequest(), None)
    assert (stats.version, stats.pushes_applied) == (8, 8)


# -- the command line: pslab serve --------------------------------------------------------


def _scenario(tmp_path: Path) -> tuple[Path, int]:
    """A digits scenario for async_ps; its file and the model's parameter count."""
    import yaml

    from pslab.algorithms import build_plan
    from pslab.scenario import scenario_from_dict

    spec = {
        "name": "journal-cli",
        "topology": {"preset": "single_node", "gpus_per_node": 0, "workers_per_node": 1},
        "workload": {"model": "digits_mlp", "batch_size": 32, "compute_time": 0, "io_time": 0},
        "algorithm": {"name": "async_ps", "lr": 0.1},
        "run": {"iterations": 4, "seed": 0},
        "emulation": {"compute": "emulated", "model": "digits_mlp"},
    }
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path, build_plan(scenario_from_dict(spec)).model.params


@pytest.mark.slow
def test_pslab_serve_checkpoints_on_stop_even_when_signalled_twice_and_refuses_a_bad_journal(
    tmp_path, capsys
) -> None:
    import signal
    import subprocess
    import sys

    from pslab_cli.main import main

    scenario, n = _scenario(tmp_path)
    state = tmp_path / "state"
    cmd = [sys.executable, "-c", "from pslab_cli.main import main; raise SystemExit(main())"]
    serve = [*cmd, "serve", str(scenario), "--role", "ps", "--checkpoint-dir", str(state)]
    proc = subprocess.Popen(serve, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().rsplit(":", 1)[1])
        with PSClient([f"127.0.0.1:{port}"], 0, 1, n) as c:
            c.register()
            for i in range(5):
                c.push(np.full(n, 0.01, np.float32), i, computed_on=i)
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGTERM)  # impatient: the final checkpoint is still written
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    with np.load(state / CHECKPOINT) as z:
        assert int(z["version"]) == 5 and z["counters"].tolist() == [5, 5]
        journal = state / f"journal-{int(z['generation'])}.log"
    assert journal.stat().st_size == 0  # all in the final checkpoint
    # a journal that does not prove itself: exit 2 and what to do, no traceback
    journal.write_bytes(b"\x01" * (HEAD + 4 * n + CRC.size) * 2)
    code = main(["serve", str(scenario), "--role", "ps", "--resume", str(state)])
    message = capsys.readouterr().err
    assert code == 2 and "Traceback" not in message
    assert journal.name in message and "record 0" in message and "--discard-after" in message
    assert main(["serve", str(scenario), "--role", "ps", "--discard-after", "0"]) == 2
    assert "goes with --resume" in capsys.readouterr().err
