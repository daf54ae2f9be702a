"""Checks `moeq serve` makes before anything starts (no gradio import, so a refusal is instant):
the address is free, and a server without logins is not exposed beyond loopback by accident."""

from __future__ import annotations

import errno
import ipaddress
import socket

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
        return ("WARNING: team mode without MOEQ_AUTH: every local user of this host can read and launch every "
                "project's runs (set MOEQ_AUTH=1)")
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
