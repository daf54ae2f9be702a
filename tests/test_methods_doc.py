"""Project docs stand on their own: docs/methods.md covers each technique, and no source file points
outside the repository for its equations."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_source_file_points_to_external_background_docs():
    offenders = []
    for top in ("app", "jobs", "contract", "quant_core", "kernels", "db"):
        for f in (ROOT / "moeq" / top).rglob("*"):
            if f.is_file() and f.suffix in (".py", ".md", ".txt", ".html", ".js", ".ini", ".toml", ".json"):
                text = f.read_text(errors="ignore")
                if re.search(r"shared/|ALGORITHMS\.md", text):
                    offenders.append(str(f.relative_to(ROOT)))
    assert not offenders, offenders


def test_methods_doc_has_a_section_per_technique_with_paper_and_file():
    text = (ROOT / "docs" / "methods.md").read_text()
    for section in ("EAQuant", "DuQuant", "SmoothQuant", "Hadamard / QuaRot rotation", "MoQE", "RTN", "GPTQ"):
        m = re.search(rf"^## {re.escape(section)}.*?(?=^## |\Z)", text, re.M | re.S)
        assert m, f"no section {section}"
        body = m.group(0)
        assert "`moeq/quant_core/" in body, f"{section}: no implementing file named"
    for cited in re.findall(r"`(moeq/quant_core/[\w/]+\.py)`", text):
        assert (ROOT / cited).is_file(), cited
