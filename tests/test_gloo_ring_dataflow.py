"""experiments.gloo_ring_dataflow: real gloo members on loopback, their arrivals staggered."""

from __future__ import annotations

import json

import pytest

from experiments.gloo_ring_dataflow import main


@pytest.mark.slow
def test_staggered_members_arrive_apart_and_the_json_line_holds_every_figure(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--members", "2", "--bytes", "65536", "--calls", "4", "--skip", "1"]
    assert main([*argv, "--sleep-ms", "5", "--staggers", "0,40"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (last["members"], last["calls"]) == (2, 4)
    together, apart = last["rows"]
    assert (together["stagger_ms"], apart["stagger_ms"]) == (0, 40)
    # two members, 40 ms: one of them sleeps 20 ms more than the other, every call
    assert apart["arrival_spread_ms"] > together["arrival_spread_ms"] + 10
    for row in (together, apart):
        assert 0 <= row["first_left_after_last_in_ms"] <= row["last_left_after_last_in_ms"]
        assert row["departure_spread_ms"] >= 0


def test_too_few_members_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--members", "1"])
    assert exc.value.code == 2
