"""The README documents every setting the code reads (docs that match)."""

from __future__ import annotations

from pathlib import Path

from models.infra.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    names = [f"FARM_{name.upper()}" for name in Settings.model_fields]
    assert len(names) > 30
    assert [n for n in names if n not in text] == []
