"""The "known device" cookie of `moeq serve` (logins): a browser that signed in as a user gets
`moeq-device` (HttpOnly, SameSite=Lax, Path=<root path>, Secure over https, 30 days), an HMAC of
the user name and the time under a key kept in $MOEQ_HOME/device-key (0600). Logging in as that
user from that browser is then throttled only on its own failures (moeq.app.login_guard): not by
the address's lock, the (name, address) lock or the name's budget — so nobody sharing the address
(every account on a shared host is 127.0.0.1) can lock a returning user out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from http.cookies import SimpleCookie
from pathlib import Path

COOKIE = "moeq-device"
MAX_AGE_S = 30 * 86400
KEY_BYTES = 32


def load_key(home: Path) -> bytes:
    """The server's device key, created (0600) on first use."""
    from moeq.contract.safe_open import read_limited

    path = home / "device-key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        key = read_limited(path, KEY_BYTES)
        if len(key) == KEY_BYTES:
            return key
        path.unlink()
        return load_key(home)
    key = secrets.token_bytes(KEY_BYTES)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


def _sign(key: bytes, payload: str) -> str:
    return hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()[:32]


def issue(key: bytes, user: str, now: float | None = None) -> str:
    name = base64.urlsafe_b64encode(user.encode("utf-8")).decode().rstrip("=")
    payload = f"{name}.{int(time.time() if now is None else now)}"
    return f"{payload}.{_sign(key, payload)}"


def device_of(key: bytes, cookie_header: str, user: str, now: float | None = None) -> str | None:
    """The device id (its signature) if the request carries a valid, fresh cookie for `user`."""
    jar = SimpleCookie()
    try:
        jar.load(cookie_header or "")
    except Exception:  # a malformed Cookie header is no device
        return None
    value = jar[COOKIE].value if COOKIE in jar else ""
    parts = value.split(".")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    name, issued, sig = parts
    if not hmac.compare_digest(sig.encode(), _sign(key, f"{name}.{issued}").encode()):
        return None
    try:
        signed_user = base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode("utf-8")
    except ValueError:
        return None
    age = (time.time() if now is None else now) - int(issued)
    return sig if signed_user == user and 0 <= age <= MAX_AGE_S else None


def set_cookie(value: str, path: str, secure: bool) -> bytes:
    cookie = f"{COOKIE}={value}; Max-Age={MAX_AGE_S}; Path={path}; HttpOnly; SameSite=Lax"
    return (cookie + ("; Secure" if secure else "")).encode("latin-1", "replace")
