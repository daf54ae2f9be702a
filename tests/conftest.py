"""Shared fixtures. Services (PostgreSQL, Redis) are real, on 127.0.0.1, as on every dev/CI machine."""

from __future__ import annotations

import os
import uuid

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture()
def moeq_home(tmp_path, monkeypatch):
    """An isolated $MOEQ_HOME for the test."""
    home = tmp_path / "moeq-home"
    home.mkdir()
    monkeypatch.setenv("MOEQ_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory):
    """A zoo directory with every tiny-<family> checkpoint built once per test session."""
    from moeq.quant_core.zoo.build import ensure_built
    from moeq.quant_core.zoo.tiny import TINY_CONFIGS

    zoo = tmp_path_factory.mktemp("zoo")
    for family in TINY_CONFIGS:
        ensure_built(f"tiny-{family}", zoo)
    return zoo


def load_tiny(zoo, family):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(zoo / f"tiny-{family}")
    model.eval()
    model.requires_grad_(False)
    return model


FAMILIES = ("mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v2", "deepseek_v3")


@pytest.fixture(scope="session")
def testbed_ctx(tmp_path_factory):
    """A RunContext whose zoo holds both trained testbeds; its cache keeps FP evaluations across tests."""
    from moeq.quant_core.context import RunContext
    from moeq.quant_core.zoo.build import ensure_built

    root = tmp_path_factory.mktemp("testbeds")
    for name in ("testbed-mixtral", "testbed-shared"):
        ensure_built(name, root / "zoo")
    return RunContext(zoo_dir=root / "zoo", cache_dir=root / "cache")


# Small but meaningful settings for runs on the trained testbeds in the default suite.
TESTBED_CALIB = {"samples": 32, "seq_len": 256}
TESTBED_EVAL = {"tasks": ["testbed"], "limit": 20, "ppl_windows": 8, "seq_len": 256, "kl_tokens": 2048}


def run_on_testbed(ctx, model: str, **recipe) -> dict:
    """Run a recipe on a testbed with the small default calibration/evaluation settings."""
    from moeq.quant_core.api import run

    full = {"model": model, "calibration": dict(TESTBED_CALIB), "eval": dict(TESTBED_EVAL)}
    for key, value in recipe.items():
        full[key] = {**full[key], **value} if isinstance(value, dict) and isinstance(full.get(key), dict) else value
    return run(full, ctx)


PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture()
def pg_url():
    """A fresh PostgreSQL database for one test (the server on 127.0.0.1), dropped afterwards."""
    from sqlalchemy import create_engine, text

    name = f"moeq_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
