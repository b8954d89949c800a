"""The Python API as a notebook uses it, and the docs' example, executed as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import pslab

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "scenarios" / "quickstart.yaml"


def test_simulate_a_path_gives_metrics_and_trace() -> None:
    result = pslab.simulate(QUICKSTART)
    assert result.metrics["iteration_time_s"] > 0
    assert result.trace.spans
    assert result.scenario.name == "quickstart"


def test_overrides_in_both_spellings_agree_and_are_validated() -> None:
    base = pslab.load(QUICKSTART)
    a = base.replace(topology__workers_per_node=2)
    b = base.replace(**{"topology.workers_per_node": 2})
    assert a == b and a.topology.n_workers == 2
    assert base.topology.n_workers == 4  # the original is untouched
    fast = base.replace(**{"topology.inter_link.bandwidth": "8Gb/s"})
    assert fast.topology.inter_link.bandwidth == 1e9
    with pytest.raises(pslab.ScenarioError, match=r"topology\.nodes"):
        base.replace(topology__nodes=0)
    with pytest.raises(pslab.ScenarioError, match=r"workload\.compute_time"):
        pslab.simulate(base, workload__compute_time="soon")


def test_simulate_out_dir_writes_results(tmp_path: Path) -> None:
    pslab.simulate(QUICKSTART, tmp_path / "run")
    assert {"metrics.json", "trace.json", "scenario.yaml"} <= {
        p.name for p in (tmp_path / "run").iterdir()
    }


def test_to_frame_has_one_row_per_span() -> None:
    pd = pytest.importorskip("pandas")
    result = pslab.simulate(QUICKSTART)
    frame = result.to_frame()
    assert isinstance(frame, pd.DataFrame)
    assert len(frame) == len(result.trace.spans)
    assert (frame["dur"] >= 0).all()


def test_to_frame_without_pandas_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas → ImportError
    result = pslab.simulate(QUICKSTART)
    with pytest.raises(ImportError, match="pip install pandas"):
        result.to_frame()


def test_the_example_in_docs_api_md_runs(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    match = re.search(r"## Example.*?```python\n(.*?)```", text, re.S)
    assert match, "docs/api.md lost its example"
    monkeypatch.chdir(ROOT)
    exec(compile(match.group(1), "docs/api.md", "exec"), {})
    assert "ms/iteration" in capsys.readouterr().out


def test_one_liner_from_the_issue() -> None:
    code = (
        "import pslab; "
        "print(pslab.simulate('scenarios/quickstart.yaml').metrics['iteration_time_s'])"
    )
    p = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0, p.stderr
    assert float(p.stdout) > 0


def test_a_timing_only_simulation_never_imports_torch() -> None:
    """`pslab sim` starts fast because torch and scikit-learn (seconds to import) load only
    for scenarios with ``numerics``; no absolute time is asserted, the machine varies."""
    code = (
        "import sys, pslab_cli.main\n"
        f"assert pslab_cli.main.main(['sim', {str(QUICKSTART)!r}, '--json']) == 0\n"
        "heavy = [m for m in ('torch', 'sklearn', 'matplotlib') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
