"""Issue 25, third round, item 7: every numeric CLI option goes through one bounded parser, so a
5000-digit value gets one short line naming the option, and the value is never echoed back."""

from __future__ import annotations

import pytest

from tests.security.conftest import moeq

HUGE = "9" * 5000


@pytest.mark.parametrize("args", [("run", "--seed", HUGE), ("run", "--avg-bits", HUGE),
                                  ("runs", "list", "--limit", HUGE), ("serve", "--port", HUGE),
                                  ("run", "--samples", HUGE + "x")],
                         ids=["seed", "avg-bits", "limit", "port", "samples"])
def test_a_huge_number_is_one_short_line(tmp_path, args):
    out = moeq(*args, env={"MOEQ_HOME": str(tmp_path / "home")})
    assert out.returncode == 2
    last = out.stderr.strip().splitlines()[-1]
    assert f"argument {args[-2]}: expected a" in last and " characters" in last, last
    assert "9" * 50 not in out.stderr and len(out.stderr) < 3000, out.stderr[:300]
