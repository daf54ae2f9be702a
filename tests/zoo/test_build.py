"""Zoo models are built once even when several processes ask at the same moment (two workers
starting their first job): nobody sees a half-built directory or loses it to another's rebuild."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

from moeq.quant_core.zoo.build import ensure_built


def _build_and_load(zoo_dir: str, queue) -> None:
    from transformers import AutoModelForCausalLM

    try:
        path = ensure_built("tiny-mixtral", Path(zoo_dir))
        AutoModelForCausalLM.from_pretrained(path)
        queue.put(("ok", str(path.stat().st_ino)))
    except Exception as exc:  # reported to the parent
        queue.put(("error", repr(exc)))


def test_concurrent_builds_all_load_the_same_directory(tmp_path):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_build_and_load, args=(str(tmp_path), queue)) for _ in range(3)]
    for p in procs:
        p.start()
    outcomes = [queue.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(30)
    assert [o for o, _ in outcomes] == ["ok"] * 3, outcomes
    assert len({ino for _, ino in outcomes}) == 1  # built once: every process loaded the same directory
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tiny-mixtral-")]  # no temp dirs left
