"""A stream end's CPU against its size: straight lines through the calibrated sizes."""

from __future__ import annotations

import pytest
import yaml
from conftest import zero_cost_profile

from pslab.profile import Profile, ProfileError, stream_key
from pslab.stream_costs import StreamCosts

MB = 1 << 20


def _curved() -> StreamCosts:
    """A client's send: 1.0 ns/B at 2 MiB, 0.5 at 8 MiB, 0.4 at 64 MiB (cheaper per byte
    as the stream grows, as measured on the 2-core machine)."""
    at = {stream_key("send", 2 * MB): 1.0e-9, stream_key("send", 64 * MB): 0.4e-9}
    profile = zero_cost_profile(
        send_cpu_s_per_byte=0.5e-9, stream_bytes=8 * MB, stream_cpu_s_per_byte_at=at
    )
    return StreamCosts(profile)


def test_a_calibrated_size_costs_what_was_measured_there() -> None:
    costs = _curved()
    for size, per_byte in ((2 * MB, 1.0e-9), (8 * MB, 0.5e-9), (64 * MB, 0.4e-9)):
        assert costs.end(size, True, False).hot_s == pytest.approx(size * per_byte)


def test_between_two_sizes_the_cost_is_on_the_line_through_them() -> None:
    """4 MiB: a third of the way from 2 MiB's 2.097 ms to 8 MiB's 4.194 ms."""
    at_2, at_8 = 2 * MB * 1.0e-9, 8 * MB * 0.5e-9
    assert _curved().end(4 * MB, True, False).hot_s == pytest.approx(at_2 + (at_8 - at_2) / 3)


def test_beyond_the_largest_size_each_byte_costs_the_last_lines_slope() -> None:
    at_8, at_64 = 8 * MB * 0.5e-9, 64 * MB * 0.4e-9
    slope = (at_64 - at_8) / (56 * MB)
    assert _curved().end(80 * MB, True, False).hot_s == pytest.approx(at_64 + 16 * MB * slope)


def test_below_the_smallest_size_each_byte_costs_as_there() -> None:
    assert _curved().end(MB // 2, True, False).hot_s == pytest.approx(MB // 2 * 1.0e-9)


def test_without_sizes_an_end_costs_in_proportion_to_its_bytes() -> None:
    """A profile that names no size (older, or hand-written): its figure per byte holds at
    every size, and a server without figures of its own costs as a client."""
    costs = StreamCosts(zero_cost_profile(send_cpu_s_per_byte=0.5e-9, rpc_cpu_s=2e-3))
    for size in (MB, 80 * MB):
        assert costs.end(size, True, False).hot_s == pytest.approx(size * 0.5e-9 + 1e-3)
        assert costs.end(size, True, True).hot_s == pytest.approx(size * 0.5e-9 + 1e-3)


def test_each_end_keeps_its_own_curve() -> None:
    """A server's receive is priced from its own figures, not the client's send."""
    at = {stream_key("server_recv", 64 * MB): 1.0e-9}
    profile = zero_cost_profile(
        send_cpu_s_per_byte=0.5e-9,
        server_recv_cpu_s_per_byte=2.0e-9,
        stream_bytes=8 * MB,
        stream_cpu_s_per_byte_at=at,
    )
    costs = StreamCosts(profile)
    assert costs.end(64 * MB, False, True).hot_s == pytest.approx(64 * MB * 1.0e-9)
    assert costs.end(64 * MB, True, False).hot_s == pytest.approx(64 * MB * 0.5e-9)


@pytest.mark.parametrize("key", ["send@big", "sender@1024", "send@0", "send"])
def test_a_bad_stream_key_is_an_error_naming_it(key: str, tmp_path) -> None:
    """A hand-written profile's curve is checked where it is read, not where a run prices
    its first stream."""
    good = zero_cost_profile(send_cpu_s_per_byte=1e-9)
    data = {**good.model_dump(mode="json"), "stream_cpu_s_per_byte_at": {key: 1e-9}}
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ProfileError) as err:
        Profile.load(path)
    assert "stream_cpu_s_per_byte_at" in str(err.value) and repr(key) in str(err.value)


@pytest.mark.parametrize("table", [{0: 1e-9}, {1024: -1.0}, {"big": 1e-9}])
def test_a_bad_slice_size_is_an_error_naming_its_table(table: dict, tmp_path) -> None:
    good = zero_cost_profile()
    data = {**good.model_dump(mode="json"), "slice_copy_s_per_byte_at": table}
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ProfileError) as err:
        Profile.load(path)
    assert "slice_copy_s_per_byte_at" in str(err.value)
