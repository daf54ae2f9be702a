"""Checks `moeq serve` makes before anything starts (no gradio import, so a refusal is instant):
the address is free, and a server without logins is not exposed beyond loopback by accident."""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import os
import secrets
import socket
from pathlib import Path

from moeq.jobs.settings import Settings
from moeq.contract.errors import MoeqError


class ServeError(MoeqError):
    """The server cannot start as asked (address in use, unsafe exposure)."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(settings: Settings, host: str) -> str | None:
    """Refuse a non-loopback address without logins unless allowed; returns a warning to show, if any."""
    if settings.auth:
        return None
    if not is_loopback(host):
        if not settings.allow_unauthenticated:
            raise ServeError(f"refusing to serve {host} without logins: anyone who reaches it could read and launch "
                             "every run. Set MOEQ_AUTH=1 (see docs/security.md), bind 127.0.0.1, or set "
                             "MOEQ_ALLOW_UNAUTHENTICATED=1 to accept that risk")
        return f"WARNING: serving {host} WITHOUT logins (MOEQ_ALLOW_UNAUTHENTICATED=1): every visitor is trusted"
    if settings.team:
        return ("WARNING: team mode without MOEQ_AUTH: whoever has the URL with its token can read and launch "
                "every project's runs (set MOEQ_AUTH=1 for per-user logins)")
    return None


def check_port_free(host: str, port: int) -> None:
    """One-line error when (host, port) cannot be bound — checked before the worker or the UI starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ServeError(f"port {port} on {host} is already in use (another moeq serve?); "
                                 "choose another with --port") from None
            raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def shared_host_roots(settings: Settings) -> Settings:
    """`moeq serve` without logins uses team mode's root defaults unless the operator set the roots:
    models from $MOEQ_HOME/models, no `file:` sources, no task folders (another local user could
    otherwise have the server read the owner's files or run a task folder from /tmp)."""
    if settings.auth:
        return settings
    return dataclasses.replace(
        settings,
        model_roots=settings.model_roots or (settings.home.expanduser().resolve() / "models",),
        data_roots=() if settings.data_roots is None else settings.data_roots,
        task_roots=() if settings.task_roots is None else settings.task_roots)


TOKEN_FILE = "serve-token"


def new_url_token(home: Path) -> str:
    """A fresh secret for this server, also written (0600) to $MOEQ_HOME/serve-token for its owner."""
    token = secrets.token_urlsafe(32)
    path = home / TOKEN_FILE
    path.unlink(missing_ok=True)  # never write through a file (or link) someone else put there
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def forget_url_token(home: Path, token: str) -> None:
    """Remove $MOEQ_HOME/serve-token at shutdown if it is still this server's."""
    path = home / TOKEN_FILE
    try:
        if path.read_text().strip() == token:
            path.unlink()
    except OSError:
        pass
