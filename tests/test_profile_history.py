from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pslab.profile import Machine, Profile
from pslab.profile_history import KEPT, count, with_history, with_scenario_figures

DAY = 24 * 3600.0


def _calibration(at: float, send: float, overlap: float = 0.5) -> Profile:
    machine = Machine(hostname="test", cores=2, python="3")
    return Profile(
        machine=machine,
        measured_at=at,
        effective_cores=2.0 - at / 1e6,  # the moment's, never a median
        send_cpu_s_per_byte=send,
        recv_cpu_s_per_byte=0.0,
        rpc_overhead_s=0.0,
        rpc_cpu_s=0.0,
        update_s_per_byte=0.0,
        stream_overlap=overlap,
        compute_s={"m@1": at},  # a scenario's table: medians over the calibrations with it
    )


def test_each_figure_is_the_median_of_the_machines_recent_calibrations(tmp_path: Path) -> None:
    history = tmp_path / "h.yaml"
    first = with_history(_calibration(0.0, 1e-9, 0.9), history, DAY)
    assert first.send_cpu_s_per_byte == 1e-9  # alone: itself
    with_history(_calibration(10.0, 9e-9, 0.1), history, DAY)
    third = with_history(_calibration(20.0, 2e-9, 0.5), history, DAY)
    assert third.send_cpu_s_per_byte == 2e-9  # one outlier (9e-9) outvoted
    assert third.stream_overlap == 0.5
    assert third.measured_at == 20.0 and third.effective_cores == 2.0 - 20.0 / 1e6
    assert third.compute_s == {"m@1": 10.0}


def test_a_scenarios_figures_measured_later_join_their_calibration(tmp_path: Path) -> None:
    """A compare measures a scenario's gloo all-reduce on the cached profile: the figure
    goes into the history entry of the calibration that profile stands on, and comes back
    as the median over the calibrations that measured it: the last, unlucky, outvoted."""
    history = tmp_path / "h.yaml"
    ring = "4x19240"
    for at, seconds in ((0.0, 1e-3), (10.0, 2e-3), (20.0, 9e-3)):
        cached = with_history(_calibration(at, 1e-9), history, DAY)
        assert ring not in cached.allreduce_s  # a fresh calibration does not measure it
        measured = cached.model_copy(update={"allreduce_s": {ring: seconds}})
        latest = with_scenario_figures(cached, measured, history, DAY)
    assert latest.allreduce_s == {ring: 2e-3}
    assert latest.send_cpu_s_per_byte == 1e-9 and latest.compute_s == {"m@1": 10.0}
    kept = yaml.safe_load(history.read_text())
    assert [e["figures"][f"allreduce_s[{ring}]"] for e in kept] == [1e-3, 2e-3, 9e-3]
    again = with_scenario_figures(latest, latest, history, DAY)  # nothing new: as it is
    assert again == latest


def test_a_profile_from_elsewhere_keeps_its_scenario_figures(tmp_path: Path) -> None:
    history = tmp_path / "h.yaml"
    with_history(_calibration(0.0, 1e-9), history, DAY)
    other = _calibration(5.0, 3e-9)  # a named calibration file: not in this history
    measured = other.model_copy(update={"allreduce_s": {"2x8": 4e-3}})
    assert with_scenario_figures(other, measured, history, DAY) == measured
    assert "allreduce_s[2x8]" not in yaml.safe_load(history.read_text())[0]["figures"]


def test_old_foreign_and_surplus_calibrations_leave_the_history(tmp_path: Path) -> None:
    history = tmp_path / "h.yaml"
    with_history(_calibration(0.0, 100e-9), history, DAY)  # too old by the last one's time
    for k in range(KEPT + 2):
        latest = with_history(_calibration(DAY + k, (k + 1) * 1e-9), history, DAY)
    kept = yaml.safe_load(history.read_text())
    assert [e["measured_at"] for e in kept] == [DAY + k for k in range(2, KEPT + 2)]
    assert latest.send_cpu_s_per_byte == (KEPT // 2 + 3) * 1e-9  # median of 3..7 ns
    kept[0]["format"] = -1  # another pslab's: dropped
    kept[1]["machine"]["cores"] = 64  # another machine's: dropped
    history.write_text(yaml.safe_dump(kept))
    again = with_history(_calibration(DAY + 10, 1e-9), history, DAY)
    assert len(yaml.safe_load(history.read_text())) == KEPT - 1
    assert again.send_cpu_s_per_byte == pytest.approx(5.5e-9)  # median of 5, 6, 7, 1 ns


def test_a_broken_history_file_starts_afresh(tmp_path: Path) -> None:
    history = tmp_path / "h.yaml"
    history.write_text("{not: [a list")
    assert with_history(_calibration(0.0, 3e-9), history, DAY).send_cpu_s_per_byte == 3e-9
    assert len(yaml.safe_load(history.read_text())) == 1


def test_a_stream_sizes_figures_are_medians_too(tmp_path: Path) -> None:
    """The figures at other stream sizes are machine-wide, each its own median: a curve
    mixing one calibration's 64 MiB figure with five calibrations' 8 MiB one would bend
    with that one moment."""
    history = tmp_path / "h.yaml"
    for at, per_byte in ((0.0, 1e-9), (10.0, 9e-9), (20.0, 2e-9)):
        profile = _calibration(at, per_byte).model_copy(
            update={"stream_bytes": 8 << 20, "stream_cpu_s_per_byte_at": {"send@1": per_byte}}
        )
        latest = with_history(profile, history, DAY)
    assert latest.stream_cpu_s_per_byte_at == {"send@1": 2e-9}
    assert latest.stream_bytes == 8 << 20


def test_a_communicators_figures_by_size_are_medians_keyed_by_bytes(tmp_path: Path) -> None:
    history = tmp_path / "h.yaml"
    for at, per_byte in ((0.0, 1e-9), (10.0, 9e-9), (20.0, 2e-9)):
        profile = _calibration(at, per_byte).model_copy(
            update={"slice_add_s_per_byte_at": {8 << 20: per_byte, 64 << 20: 2 * per_byte}}
        )
        latest = with_history(profile, history, DAY)
    assert latest.slice_add_s_per_byte_at == {8 << 20: 2e-9, 64 << 20: 4e-9}  # int keys


def test_count_is_what_the_medians_stand_on_now(tmp_path: Path) -> None:
    history = tmp_path / "h.yaml"
    machine = _calibration(0.0, 1e-9).machine
    assert count(history, machine, 0.0, DAY) == 0  # no history yet
    for at in range(KEPT + 2):
        with_history(_calibration(float(at), 1e-9), history, DAY)
    assert count(history, machine, float(KEPT), DAY) == KEPT  # at most KEPT count
    # the file keeps the last KEPT (measured at 2 to 6); a day after 2.5, the one at 2 is out
    assert count(history, machine, DAY + 2.5, DAY) == KEPT - 1
    other = machine.model_copy(update={"hostname": "elsewhere"})
    assert count(history, other, float(KEPT), DAY) == 0
