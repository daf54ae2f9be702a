"""Round 2, item 7: every file a check reads is opened non-blocking and fstat-checked before a byte is
read. A FIFO named `model.safetensors` (or `config.json`) in a model root used to block admission —
and with it every member's Launch — until someone opened the other end; it is refused at once."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from moeq.contract.errors import ModelError, MoeqError

CONFIG = {"model_type": "mixtral", "num_hidden_layers": 2, "num_local_experts": 4, "num_experts_per_tok": 2,
          "hidden_size": 64, "intermediate_size": 128, "vocab_size": 100}
BASE = {"weights": {"bits": 4, "group_size": 16}, "techniques": ["rtn"]}


def _settings(tmp_path):
    from moeq.db.store import Store
    from moeq.jobs.settings import load_settings

    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    settings = load_settings({"MOEQ_HOME": str(tmp_path / "home"), "MOEQ_DATABASE_URL": url, "MOEQ_AUTH": "1",
                              "MOEQ_MODEL_ROOTS": str(tmp_path / "models")})
    return settings, Store(url)


def _admit_in_thread(settings, store, recipe) -> tuple[dict, float]:
    """Admission in a thread (a blocked open would hang the test): its outcome and how long it took."""
    from moeq.jobs.admission import admit

    out: dict = {}

    def go():
        try:
            admit(settings, store, recipe, ("p1",))
            out["ok"] = True
        except MoeqError as exc:
            out["error"] = str(exc)

    t0 = time.monotonic()
    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    thread.join(5)
    return out, time.monotonic() - t0


def _release(fifo):
    """Open the FIFO's writing end once, so a reader blocked on it (the code as it was) comes free."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


def test_fifo_named_model_safetensors_is_refused_at_once(tmp_path):
    settings, store = _settings(tmp_path)
    model = tmp_path / "models" / "m"
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps(CONFIG))
    fifo = model / "model.safetensors"
    os.mkfifo(fifo)
    try:
        out, took = _admit_in_thread(settings, store, {**BASE, "model": str(model)})
    finally:
        _release(fifo)
    assert took < 2, f"admission blocked on the FIFO for {took:.1f} s"
    assert "error" in out and "\n" not in out["error"], out
    assert "model.safetensors is not a regular file" in out["error"]
    store.dispose()


def test_the_worker_side_check_opens_non_blocking_too(tmp_path):
    """The same reader runs in the worker before loading (moeq.quant_core.model_io.check_loadable)."""
    from moeq.contract.checkpoint_check import check_checkpoint_files

    d = tmp_path / "m"
    d.mkdir()
    fifo = d / "model-00001-of-00002.safetensors"
    os.mkfifo(fifo)
    box: dict = {}
    thread = threading.Thread(target=lambda: box.setdefault("exc", _raises(lambda: check_checkpoint_files(d))),
                              daemon=True)
    t0 = time.monotonic()
    thread.start()
    thread.join(2)
    took = time.monotonic() - t0
    _release(fifo)
    thread.join(2)
    assert took < 2 and isinstance(box.get("exc"), ModelError), box
    assert "not a regular file" in str(box["exc"])


def _raises(call):
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the test inspects what was raised
        return exc
    return None
