"""Item 4: one recipe cannot take a worker (or the web server) down: devices and FIFOs are refused
without blocking, a run pointed at a FIFO ends (and cancel works) instead of hanging, and an absurd
config.json is one line, fast."""

from __future__ import annotations

import os
import threading
import time

import pytest

from moeq.jobs.admission import admit
from moeq.contract.errors import MoeqError, RecipeError
from moeq.contract.sources import read_capped

BASE = {"model": "tiny-mixtral", "weights": {"bits": 4, "group_size": 16}, "techniques": ["rtn"]}


def test_dev_zero_is_refused_even_without_roots(tmp_path):
    from moeq.db.store import Store
    from moeq.jobs.settings import load_settings

    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    settings = load_settings({"MOEQ_HOME": str(tmp_path), "MOEQ_DATABASE_URL": url})  # embedded: no roots
    assert settings.data_roots is None
    with pytest.raises(RecipeError, match="not a regular file"):
        admit(settings, Store(url), {**BASE, "calibration": {"source": "file:/dev/zero"}})
    from pathlib import Path

    t0 = time.monotonic()
    with pytest.raises(RecipeError, match="not a regular file"):
        read_capped(Path("/dev/zero"), "source", 1 << 40)
    assert time.monotonic() - t0 < 1


def test_fifo_never_blocks_a_reader(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    with pytest.raises(RecipeError, match="not a regular file"):
        read_capped(fifo, "source", 1024)
    assert time.monotonic() - t0 < 1


def test_run_reading_a_fifo_ends_and_cancel_works(tmp_path):
    """A run whose recipe names a FIFO (stored without admission, as an older version would have)
    must end on a real worker instead of blocking it; a cancel of it is answered."""
    from moeq.db.store import Store
    from moeq.jobs.settings import load_settings
    from moeq.jobs.submit import cancel, create, enqueue
    from tests.jobs.conftest import TINY, Workers, _env, wait_for

    home = tmp_path / "home"
    home.mkdir()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    env = _env(home, f"sqlite:///{home / 'moeq.sqlite'}", None)
    settings = load_settings(env)
    store = Store(settings.database_url)
    workers = Workers(env)
    try:
        workers.start("w1")
        recipe = {**TINY, "eval": {**TINY["eval"], "source": f"file:{fifo}"}}
        rid = create(store, recipe)  # no settings: the stored-before-the-fix path
        enqueue(settings, store, rid)
        blocked = {**TINY, "calibration": {"source": f"file:{fifo}", "samples": 2, "seq_len": 32},
                   "techniques": ["gptq"]}
        rid2 = create(store, blocked)
        enqueue(settings, store, rid2)
        cancel(settings, store, rid2)
        assert wait_for(store, rid, ("failed", "cancelled", "succeeded"), timeout=120) == "failed"
        assert wait_for(store, rid2, ("failed", "cancelled", "succeeded"), timeout=60) in ("failed", "cancelled")
        ok = create(store, TINY)  # the worker is still free to work
        enqueue(settings, store, ok)
        assert wait_for(store, ok, ("failed", "cancelled", "succeeded"), timeout=120) == "succeeded"
        from moeq.db.repository.runs import get_run

        with store.session() as s:
            assert "not a regular file" in get_run(s, rid).error_message
    finally:
        workers.stop_all()
        store.dispose()


def _model_dir(tmp_path, config_text: str):
    d = tmp_path / "models" / "m"
    d.mkdir(parents=True)
    (d / "config.json").write_text(config_text)
    return d


def test_absurd_layer_count_is_one_line_and_fast(tmp_path):
    from moeq.app.services import AppServices
    from moeq.db.store import Store
    from moeq.jobs.settings import load_settings

    d = _model_dir(tmp_path, '{"model_type": "mixtral", "num_hidden_layers": 1e12, "num_local_experts": 8, '
                             '"num_experts_per_tok": 2, "hidden_size": 64}')
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    settings = load_settings({"MOEQ_HOME": str(tmp_path), "MOEQ_DATABASE_URL": url,
                              "MOEQ_MODEL_ROOTS": str(tmp_path / "models")})
    svc = AppServices(settings=settings, store=Store(url))
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("text", svc.describe(str(d))), daemon=True)
    thread.start()
    thread.join(5)  # the web server describes the model whenever the model field changes
    assert not thread.is_alive(), "describing the model hangs"
    assert out["text"].startswith("⚠") and "num_hidden_layers" in out["text"] and "\n" not in out["text"]
    with pytest.raises(MoeqError, match="num_hidden_layers"):
        admit(settings, svc.store, {**BASE, "model": str(d)})
