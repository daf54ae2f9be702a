"""Settings from environment variables (and an optional moeq.toml), validated once at start-up.

The settings file is $MOEQ_CONFIG if set (it must exist), else $MOEQ_HOME/moeq.toml (default
~/.moeq/moeq.toml) if present — never one in the current folder. It is read only if it and its folder
belong to you (or root) and nobody else may write them (moeq.jobs.private_paths); else one line.

The frozen `Settings` object is created by the entry point and passed down; nothing reads the
environment later. Variables: MOEQ_HOME, MOEQ_DATABASE_URL, MOEQ_BROKER_URL, MOEQ_RESULT_BACKEND,
MOEQ_MODEL_ROOTS, MOEQ_DATA_ROOTS, MOEQ_TASK_ROOTS (os.pathsep-separated), MOEQ_ALLOW_REMOTE_CODE,
MOEQ_KERNELS, MOEQ_AUTH, MOEQ_ALLOW_UNAUTHENTICATED, MOEQ_DEVICE, MOEQ_LOGIN_MAX_FAILURES,
MOEQ_LOGIN_LOCK_S, MOEQ_WORK_BUDGET, MOEQ_WORKER_MEMORY_GB, MOEQ_TRUSTED_PROXIES, MOEQ_ALLOWED_ORIGINS,
MOEQ_ALLOWED_HOSTS (comma-separated), MOEQ_MAX_BODY_MB (request bodies with credentials),
MOEQ_MAX_STREAMS_PER_CLIENT (open Gradio streams per signed-in client),
MOEQ_ROOT_PATH (with logins: the path the workbench lives under). See
docs/security.md for what the roots and switches guarantee.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from moeq.contract.errors import MoeqError
from moeq.jobs.private_paths import check_home, read_settings_file


class SettingsError(MoeqError):
    """A setting is missing or malformed; the message names the variable."""


KERNEL_MODES = ("auto", "torch", "triton")
STREAM_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    broker_url: str | None = None  # None → embedded broker on SQLite under home
    result_backend: str | None = None
    model_roots: tuple[Path, ...] = ()
    allow_remote_code: bool = False
    kernels: str = "auto"
    auth: bool = False
    device: str = "auto"
    heartbeat_s: float = 5.0
    lease_s: float = 60.0
    max_attempts: int = 2
    requeue_s: float = 600.0
    # where recipes may name files (moeq.contract.sources): None = anywhere (embedded mode, one local
    # user); () = nowhere. Team mode (a broker or MOEQ_AUTH) defaults to () until the operator sets
    # them, and its model roots default to $MOEQ_HOME/models.
    data_roots: tuple[Path, ...] | None = None
    task_roots: tuple[Path, ...] | None = None
    allow_unauthenticated: bool = False  # serve a non-loopback address without MOEQ_AUTH
    login_max_failures: int = 5  # per user and window; an address gets 4x as many
    login_lock_s: float = 300.0
    # admission's cost model (moeq.contract.cost): parameter-tokens one run may ask for, and the memory
    # a worker has (None: this host's physical memory) that a model's config is bounded against
    work_budget: float = 1e18
    worker_memory_gb: float | None = None
    # web server (moeq.app.web_guard / moeq.app.http_app): addresses whose X-Forwarded-For is believed
    # (none: the client address is the socket's); origins besides the page's own that may call it;
    # Host names it answers to (empty: the loopback names when bound to loopback, else any)
    trusted_proxies: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    root_path: str = ""  # with logins: the workbench lives under this path (its cookies scoped to it)
    max_body_mb: float = 16.0  # the largest request body with credentials (moeq.app.body_limit)
    # streamed runs (docs/streaming.md): whether to stream layers from disk, and how many routed experts
    # a streamed layer holds at once ("auto": sized from the memory this worker may still use)
    stream: str = "auto"
    stream_chunk_experts: int | str = "auto"
    max_streams_per_client: int = 32  # open Gradio API streams per signed-in client (moeq.app.session_gate)

    @property
    def team(self) -> bool:
        """Shared use: a real broker (several hosts) or logins."""
        return not self.embedded or self.auth

    @property
    def embedded(self) -> bool:
        return self.broker_url is None

    @property
    def zoo_dir(self) -> Path:
        return self.home / "zoo"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def worker_memory_bytes(self) -> int:
        if self.worker_memory_gb is not None:
            return int(self.worker_memory_gb * 1e9)
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")

    def effective_broker_url(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{self.home / 'broker.sqlite'}"

    def effective_result_backend(self) -> str:
        if self.result_backend:
            return self.result_backend
        if self.broker_url and self.broker_url.startswith("redis"):
            return self.broker_url
        return f"db+sqlite:///{self.home / 'results.sqlite'}"


def _bool(name: str, value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"{name}: expected a boolean (1/0/true/false), got {value!r}")


def _number(name: str, value: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise SettingsError(f"{name}: expected a number, got {value!r}") from None
    if not v > 0:  # NaN too
        raise SettingsError(f"{name}: must be > 0, got {value!r}")
    return v


def _root_path(value: str) -> str:
    value = value.strip().rstrip("/")
    if value and not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", value):
        raise SettingsError(f"MOEQ_ROOT_PATH: expected a path like /moeq (letters, digits, . _ ~ -), got {value[:80]!r}")
    return value


def _choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise SettingsError(f"{name}: must be one of {', '.join(choices)}, got {value[:80]!r}")
    return value


def _chunk(value: str) -> int | str:
    """MOEQ_STREAM_CHUNK_EXPERTS: 'auto' or a positive whole number."""
    value = value.strip()
    if value == "auto":
        return value
    if not re.fullmatch(r"[0-9]{1,6}", value) or int(value) < 1:
        raise SettingsError(f"MOEQ_STREAM_CHUNK_EXPERTS: must be 'auto' or a positive whole number, got {value[:80]!r}")
    return int(value)


def _list(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


def load_settings(env: Mapping[str, str] | None = None, toml_path: Path | None = None) -> Settings:
    """Read settings from `env` (default os.environ) over an optional moeq.toml ([moeq] table)."""
    env = dict(os.environ if env is None else env)
    file_values: dict = {}
    if toml_path is None and env.get("MOEQ_CONFIG"):
        toml_path = Path(env["MOEQ_CONFIG"]).expanduser()
        if not toml_path.exists():
            raise SettingsError(f"MOEQ_CONFIG: no such file {toml_path}")
    if toml_path is None:  # never the current folder: anyone may have written a moeq.toml there
        toml_path = Path(env.get("MOEQ_HOME") or Path.home() / ".moeq").expanduser() / "moeq.toml"
    if toml_path.exists() or toml_path.is_symlink():
        file_values = read_settings_file(toml_path)

    def get(name: str, key: str, default: str | None = None) -> str | None:
        if name in env:
            return env[name]
        if key in file_values:
            return str(file_values[key])
        return default

    home = Path(get("MOEQ_HOME", "home", str(Path.home() / ".moeq"))).expanduser()
    db_url = get("MOEQ_DATABASE_URL", "database_url") or f"sqlite:///{home / 'moeq.sqlite'}"
    def paths(value: str | None) -> tuple[Path, ...]:
        return tuple(Path(p).expanduser().resolve() for p in (value or "").split(os.pathsep) if p)

    broker = get("MOEQ_BROKER_URL", "broker_url") or None
    auth = _bool("MOEQ_AUTH", get("MOEQ_AUTH", "auth", "0"))
    team = broker is not None or auth
    roots = paths(get("MOEQ_MODEL_ROOTS", "model_roots"))
    if team and not roots:  # shared use: local models only from a folder the operator chose
        roots = (home.resolve() / "models",)
    data_env, task_env = get("MOEQ_DATA_ROOTS", "data_roots"), get("MOEQ_TASK_ROOTS", "task_roots")
    data_roots = paths(data_env) if data_env is not None else (() if team else None)
    task_roots = paths(task_env) if task_env is not None else (() if team else None)
    kernels = get("MOEQ_KERNELS", "kernels", "auto")
    if kernels not in KERNEL_MODES:
        raise SettingsError(f"MOEQ_KERNELS: must be one of {KERNEL_MODES}, got {kernels!r}")
    return Settings(
        home=home,
        database_url=db_url,
        broker_url=broker,
        result_backend=get("MOEQ_RESULT_BACKEND", "result_backend") or None,
        model_roots=roots,
        allow_remote_code=_bool("MOEQ_ALLOW_REMOTE_CODE", get("MOEQ_ALLOW_REMOTE_CODE", "allow_remote_code", "0")),
        kernels=kernels,
        auth=auth,
        device=get("MOEQ_DEVICE", "device", "auto"),
        heartbeat_s=_number("MOEQ_HEARTBEAT_S", get("MOEQ_HEARTBEAT_S", "heartbeat_s", "5")),
        lease_s=_number("MOEQ_LEASE_S", get("MOEQ_LEASE_S", "lease_s", "60")),
        max_attempts=int(_number("MOEQ_MAX_ATTEMPTS", get("MOEQ_MAX_ATTEMPTS", "max_attempts", "2"))),
        requeue_s=_number("MOEQ_REQUEUE_S", get("MOEQ_REQUEUE_S", "requeue_s", "600")),
        data_roots=data_roots,
        task_roots=task_roots,
        allow_unauthenticated=_bool("MOEQ_ALLOW_UNAUTHENTICATED",
                                    get("MOEQ_ALLOW_UNAUTHENTICATED", "allow_unauthenticated", "0")),
        login_max_failures=int(_number("MOEQ_LOGIN_MAX_FAILURES", get("MOEQ_LOGIN_MAX_FAILURES",
                                                                      "login_max_failures", "5"))),
        login_lock_s=_number("MOEQ_LOGIN_LOCK_S", get("MOEQ_LOGIN_LOCK_S", "login_lock_s", "300")),
        work_budget=_number("MOEQ_WORK_BUDGET", get("MOEQ_WORK_BUDGET", "work_budget", "1e18")),
        worker_memory_gb=_number("MOEQ_WORKER_MEMORY_GB", memory) if (memory := get(
            "MOEQ_WORKER_MEMORY_GB", "worker_memory_gb")) else None,
        trusted_proxies=_list(get("MOEQ_TRUSTED_PROXIES", "trusted_proxies")),
        allowed_origins=tuple(o.rstrip("/") for o in _list(get("MOEQ_ALLOWED_ORIGINS", "allowed_origins"))),
        allowed_hosts=tuple(h.lower() for h in _list(get("MOEQ_ALLOWED_HOSTS", "allowed_hosts"))),
        root_path=_root_path(get("MOEQ_ROOT_PATH", "root_path", "")),
        max_body_mb=_number("MOEQ_MAX_BODY_MB", get("MOEQ_MAX_BODY_MB", "max_body_mb", "16")),
        stream=_choice("MOEQ_STREAM", get("MOEQ_STREAM", "stream", "auto"), STREAM_MODES),
        stream_chunk_experts=_chunk(get("MOEQ_STREAM_CHUNK_EXPERTS", "stream_chunk_experts", "auto")),
        max_streams_per_client=int(_number("MOEQ_MAX_STREAMS_PER_CLIENT", get(
            "MOEQ_MAX_STREAMS_PER_CLIENT", "max_streams_per_client", "32"))),
    )


def ensure_home(settings: Settings) -> Settings:
    """Create the home directories the embedded mode writes to (the home 0700 when created here; the
    SQLite database is created 0600 by moeq.db.engine.private_sqlite_file, whoever opens it first).
    An existing home that another user owns, or that group or others may write, is refused."""
    check_home(settings.home)
    settings.home.mkdir(mode=0o700, parents=True, exist_ok=True)  # private to its owner when we create it
    for d in (settings.home, settings.zoo_dir, settings.artifacts_dir, settings.cache_dir):
        d.mkdir(parents=True, exist_ok=True)
    return settings


__all__ = ["Settings", "SettingsError", "load_settings", "ensure_home"]
