"""moeq installs one import name, `moeq`, and never shares a file or a name with another distribution.

The wheel is built here from the checkout (no build isolation, no network) and its contents read;
every installed distribution's RECORD is read to see that none owns a file under `moeq/`; and, where
Hugging Face's `kernels` is installed (transformers >= 5.25 depends on it), a Python started in the
checkout — whose root is then on sys.path — imports *their* `kernels`, not something of ours.
"""

from __future__ import annotations

import importlib.metadata as md
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (whl,) = out.glob("moeq-*.whl")
    return whl


def test_the_wheel_installs_one_top_level_name(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"moeq"}, tops
    (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
    assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["moeq"]


def test_the_wheel_carries_every_package_and_its_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for init in (ROOT / "moeq").rglob("__init__.py"):
        rel = init.relative_to(ROOT).as_posix()
        if "__pycache__" not in rel:
            assert rel in names, f"{rel} is missing from the wheel"
    for suffix in (".safetensors", ".mako", ".json"):  # trained testbeds, Alembic's template, configs
        shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / "moeq").rglob(f"*{suffix}")}
        assert shipped and shipped <= names, sorted(shipped - names)[:5]


def test_no_other_distribution_owns_a_file_under_moeq():
    owners = {}
    for dist in md.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name == "moeq":
            continue
        for f in dist.files or ():
            if f.parts and f.parts[0] == "moeq":
                owners.setdefault(name, []).append(str(f))
    assert not owners, owners


def _installed_moeq() -> md.Distribution:
    """The installed distribution (it has a RECORD), not a build's moeq.egg-info in the checkout."""
    found = [d for d in md.distributions(name="moeq") if d.read_text("RECORD") is not None]
    assert found, "moeq is not installed (pip install -e '.[dev]')"
    return found[0]


def test_the_installed_moeq_owns_no_other_top_level_name():
    dist = _installed_moeq()
    top = (dist.read_text("top_level.txt") or "").split()
    assert top in ([], ["moeq"]), top  # an editable install writes none
    for f in dist.files or ():
        first = f.parts[0]
        # the package, its metadata, an editable install's finder, the console script (../../bin)
        assert first in ("moeq", "..") or first.endswith((".dist-info", ".pth")) or f.name.startswith("__editable__"), f


def test_hugging_face_kernels_stays_theirs_even_from_the_checkout():
    try:
        dist = md.distribution("kernels")
    except md.PackageNotFoundError:
        pytest.skip("Hugging Face's kernels is not installed in this environment")
    # `-c` puts the working directory first on sys.path: the checkout's root must hold no `kernels`
    code = ("import kernels, sys; print(kernels.__file__); "
            "assert callable(kernels.get_kernel)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    theirs = Path(dist.locate_file("kernels")).resolve()
    assert Path(proc.stdout.strip()).resolve().is_relative_to(theirs), proc.stdout


def test_no_generic_top_level_package_is_left_in_the_checkout():
    """The six old names (and `spec`) must not come back as importable folders at the repository root."""
    for old in ("app", "jobs", "db", "quant_core", "kernels", "spec", "contract"):
        assert not (ROOT / old).exists(), f"{old}/ at the repository root would shadow or clobber another package"
