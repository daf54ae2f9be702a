"""docs/families.md's coverage table is the one moeq.contract.coverage generates from the family data."""

from __future__ import annotations

from pathlib import Path

from moeq.contract.coverage import TABLE_BEGIN, TABLE_END, coverage_markdown
from moeq.contract.families import FAMILY_BY_NAME

DOC = Path(__file__).resolve().parents[1] / "docs" / "families.md"


def test_families_doc_table_matches_the_code():
    text = DOC.read_text()
    table = text[text.index(TABLE_BEGIN):text.index(TABLE_END) + len(TABLE_END)]
    assert table == coverage_markdown(), "docs/families.md is out of date: run write_families_doc()"
    for name in FAMILY_BY_NAME:
        assert f"| `{name}` |" in table
