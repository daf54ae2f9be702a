"""An operator sets how a worker streams (MOEQ_STREAM) and how many routed experts a streamed layer holds
at once (MOEQ_STREAM_CHUNK_EXPERTS); every run this worker executes gets them; bad values are one line."""

from __future__ import annotations

import pytest

from moeq.jobs.local import make_context
from moeq.jobs.settings import SettingsError, load_settings


def test_defaults_decide_from_memory(tmp_path):
    s = load_settings({"MOEQ_HOME": str(tmp_path)})
    ctx = make_context(s)
    assert (s.stream, s.stream_chunk_experts) == ("auto", "auto") == (ctx.stream, ctx.stream_chunk_experts)


def test_the_operator_settings_reach_every_run(tmp_path):
    s = load_settings({"MOEQ_HOME": str(tmp_path), "MOEQ_STREAM": "on", "MOEQ_STREAM_CHUNK_EXPERTS": "4"})
    ctx = make_context(s)
    assert (ctx.stream, ctx.stream_chunk_experts) == ("on", 4)


@pytest.mark.parametrize("name,value", [("MOEQ_STREAM", "yes"), ("MOEQ_STREAM_CHUNK_EXPERTS", "0"),
                                        ("MOEQ_STREAM_CHUNK_EXPERTS", "-2"), ("MOEQ_STREAM_CHUNK_EXPERTS", "1.5"),
                                        ("MOEQ_STREAM_CHUNK_EXPERTS", "9" * 5000)])
def test_bad_values_are_one_short_line(tmp_path, name, value):
    with pytest.raises(SettingsError) as err:
        load_settings({"MOEQ_HOME": str(tmp_path), name: value})
    assert str(err.value).startswith(name) and "\n" not in str(err.value) and len(str(err.value)) < 200
