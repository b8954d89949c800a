"""``pslab compare`` of a netns scenario predicts the shaped links that run really had.

Root only (network namespaces); skipped with the reason elsewhere.
"""

from __future__ import annotations

import json

import pytest
from conftest import needs_netns

from pslab_cli.main import main


@needs_netns
@pytest.mark.slow  # calibration and a run on shaped links: ~15 s
def test_a_netns_compare_predicts_the_shaped_run(tmp_path, root) -> None:
    out = tmp_path / "cmp"
    assert main(["compare", str(root / "scenarios/netns/tiny.yaml"), "-o", str(out)]) == 0
    report = json.loads((out / "compare.json").read_text())
    it = report["metrics"]["iteration_time_s"]
    assert abs(it["error_pct"]) <= 10, it
    # priced on the scenario's shaped links, not as loopback
    assert json.loads((out / "replay" / "pslab.json").read_text())["network"] == "netns"
    assert "sw->ps0" in {
        link["name"] for link in json.loads((out / "sim" / "metrics.json").read_text())["links"]
    }
