"""Files and folders a recipe may name, confined to operator-set roots (torch-free).

A recipe names files in four places: `calibration.source` / `eval.source` ("file:<text>"),
`eval.tasks` ("file:<jsonl>"), `eval.lm_eval_include` (a folder of lm-eval task YAMLs, which may
import Python through `!function`) and MoQE `path:<saved model>` variants; a MoQE recipe variant may
set its own `calibration.source`, confined like the run's. `eval.tasks` "lm_eval:<name>" is a name
in lm-eval's registry only: no path, no glob (lm-eval would load a YAML path as a task, and its
`!function` imports Python). Each is resolved after
symlinks and must lie inside its roots: data roots for `file:`, task roots for the lm-eval folder,
model/artifact roots for saved models. Roots `None` mean "unrestricted" (a single local user, the
CLI, tests); an empty tuple refuses every path. Only regular files are read (never FIFOs, devices
or sockets: those are opened non-blocking and refused), never more than a cap, under a deadline.

`confine_recipe` checks a parsed recipe and returns it with every path replaced by its resolved
form; the readers then open exactly that path and verify that the opened file is the one checked.
"""

from __future__ import annotations

import os
import re
import stat
import time
from dataclasses import replace
from pathlib import Path

from moeq.contract.errors import RecipeError

MAX_TASK_FILE_BYTES = 64 << 20  # a JSONL task file
MAX_TEXT_BYTES = 1 << 30  # any text source, whatever the recipe asks for
READ_CHUNK = 1 << 20
READ_DEADLINE_S = 120.0  # reading one recipe-named file (slow network mounts)


# lm-eval registry names: letters, digits, '_', '-', '.', '(', ')' (checked against lm-eval 0.4.13's
# 14,683 registered names); no '/', '\\', '~', glob characters or a YAML suffix
LM_EVAL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.()\-]{0,199}")
LM_EVAL_PREFIX = "lm_eval:"


def check_lm_eval_name(name: str, key: str) -> str:
    """`name` when it can only be a task, group or tag name of lm-eval's registry, never a file path
    or a glob pattern; RecipeError otherwise."""
    if not LM_EVAL_NAME.fullmatch(name) or name.lower().endswith((".yaml", ".yml")):
        raise RecipeError(key, f"lm_eval:{name[:80]!r} is not a task name of lm-eval's registry (a name like "
                          "'arc_easy'; paths and glob patterns are refused — local task YAMLs go in a folder "
                          "under MOEQ_TASK_ROOTS, named by eval.lm_eval_include)")
    return name


def _label(roots_name: str) -> str:
    return {"data": "MOEQ_DATA_ROOTS", "task": "MOEQ_TASK_ROOTS", "model": "MOEQ_MODEL_ROOTS",
            "saved model": "MOEQ_MODEL_ROOTS; a run's saved model is named run:<id>"}.get(roots_name, roots_name)


def inside(path: Path, roots: tuple[Path, ...]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def confine(ref: str, roots: tuple[Path, ...] | None, key: str, roots_name: str, want_dir: bool = False) -> Path:
    """The resolved path of `ref`, which must lie inside `roots` (checked before anything about the
    file is revealed), exist, and be a regular file (or a directory when `want_dir`)."""
    if not ref or "\x00" in ref:
        raise RecipeError(key, "empty path" if not ref else "path contains a NUL byte")
    try:
        path = Path(ref).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        raise RecipeError(key, f"cannot resolve path {ref!r}") from None
    if roots is not None and not inside(path, roots):
        where = ", ".join(str(r) for r in roots) or "none configured"
        raise RecipeError(key, f"{ref!r} is outside the allowed {roots_name} roots ({where}; the operator "
                          f"sets them with {_label(roots_name)})")
    try:
        st = os.stat(path)
    except OSError:
        raise RecipeError(key, f"{ref!r} does not exist or is not readable") from None
    if want_dir:
        if not stat.S_ISDIR(st.st_mode):
            raise RecipeError(key, f"{ref!r} is not a directory")
    elif not stat.S_ISREG(st.st_mode):
        raise RecipeError(key, f"{ref!r} is not a regular file (FIFOs, devices and folders are refused)")
    return path


def _fd_path(fd: int) -> str | None:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def read_capped(path: Path, key: str, max_bytes: int, deadline_s: float = READ_DEADLINE_S) -> bytes:
    """At most `max_bytes` of the regular file `path`. Opened non-blocking (a FIFO swapped in never
    blocks), refused unless it is still a regular file at `path` itself, read under a deadline."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise RecipeError(key, f"cannot open {str(path)!r}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RecipeError(key, f"{str(path)!r} is not a regular file (FIFOs, devices and folders are refused)")
        real = _fd_path(fd)  # the checked (resolved) path must still be the file opened: no swapped symlink
        if real is not None and real != (str(path) if path.is_absolute() else os.path.realpath(path)):
            raise RecipeError(key, f"{str(path)!r} changed after it was checked; refused")
        chunks, total, t0 = [], 0, time.monotonic()
        while total < max_bytes:
            chunk = os.read(fd, min(READ_CHUNK, max_bytes - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if time.monotonic() - t0 > deadline_s:
                raise RecipeError(key, f"reading {str(path)!r} took longer than {deadline_s:.0f} s; refused")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text_file(ref: str, key: str, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """UTF-8 text (undecodable bytes replaced) of a path `confine_recipe` already resolved."""
    return read_capped(Path(ref), key, min(max_bytes, MAX_TEXT_BYTES)).decode("utf-8", errors="replace")


def _file_source(value: str, roots, key: str) -> str:
    if not value.startswith("file:"):
        return value
    return "file:" + str(confine(value[5:], roots, key, "data"))


def _task(value: str, roots, key: str) -> str:
    if value.startswith(LM_EVAL_PREFIX):
        return LM_EVAL_PREFIX + check_lm_eval_name(value[len(LM_EVAL_PREFIX):], key)
    return _file_source(value, roots, key)


def _confine_one(recipe, data_roots, task_roots, prefix: str = ""):
    """`recipe` (no MoQE part) with its calibration and evaluation sources confined; keys start `prefix`."""
    cal, ev = recipe.calibration, recipe.eval
    cal = replace(cal, source=_file_source(cal.source, data_roots, f"{prefix}calibration.source"))
    tasks = tuple(_task(t, data_roots, f"{prefix}eval.tasks[{i}]") for i, t in enumerate(ev.tasks))
    include = ev.lm_eval_include
    if include is not None:
        include = str(confine(include, task_roots, f"{prefix}eval.lm_eval_include", "task", want_dir=True))
    ev = replace(ev, source=_file_source(ev.source, data_roots, f"{prefix}eval.source"), tasks=tasks,
                 lm_eval_include=include)
    return replace(recipe, calibration=cal, eval=ev)


def _with_confined(variant: dict, confined) -> dict:
    """The variant dict with every source it sets itself replaced by its confined form."""
    out = dict(variant)
    for section, names in (("calibration", ("source",)), ("eval", ("source", "tasks", "lm_eval_include"))):
        own = out.get(section)
        if isinstance(own, dict):
            spec = getattr(confined, section)
            out[section] = {**own, **{n: (list(getattr(spec, n)) if n == "tasks" else getattr(spec, n))
                                      for n in names if n in own}}
    return out


def confine_recipe(recipe, *, data_roots: tuple[Path, ...] | None, task_roots: tuple[Path, ...] | None,
                   saved_roots: tuple[Path, ...] | None):
    """`recipe` (a parsed Recipe) with every named path checked against its roots and resolved: the
    run's own keys and, for MoQE, every variant as it will run (the run's keys merged with the
    variant's), so a variant's own `calibration.source` cannot name what the run's may not."""
    from moeq.contract.recipe import moqe_variants

    recipe = _confine_one(recipe, data_roots, task_roots)
    moqe = recipe.moqe
    if moqe is None:
        return recipe
    expanded = moqe_variants(recipe)
    variants = []
    for i, (v, full) in enumerate(zip(moqe.variants, expanded)):
        key = f"moqe.variants[{i}]"
        if isinstance(v, str):  # moqe_variants accepted it: a 'path:<dir>' variant
            v = "path:" + str(confine(v[5:], saved_roots, key, "saved model", want_dir=True))
        else:
            v = _with_confined(v, _confine_one(full, data_roots, task_roots, f"{key}."))
        variants.append(v)
    return replace(recipe, moqe=replace(moqe, variants=tuple(variants)))
