"""Issue 25, third round, item 3: comparing is capped (MAX_COMPARE_RUNS) with one clear line in
the CLI and on the Compare page, instead of a raw Plotly error for 50+ runs."""

from __future__ import annotations

from moeq.contract.limits import MAX_COMPARE_RUNS
from tests.security.conftest import moeq
from tests.security.web import call, login, team_server

IDS = [f"{i:08x}" for i in range(MAX_COMPARE_RUNS + 18)]
LINE = f"compare at most {MAX_COMPARE_RUNS} runs at once ({len(IDS)} given)"


def test_the_cli_refuses_too_many_runs_in_one_line(tmp_path):
    out = moeq("runs", "compare", *IDS, env={"MOEQ_HOME": str(tmp_path / "home")})
    assert out.returncode != 0 and out.stderr.strip() == f"moeq: error: {LINE}", out.stderr


def test_the_compare_page_refuses_too_many_runs_in_one_line(tmp_path):
    with team_server(tmp_path) as (base, _, _):
        code, out = call(login(base, "alice"), "compare", [" ".join(IDS)])
    assert code == 200 and LINE in str(out[0]), out
