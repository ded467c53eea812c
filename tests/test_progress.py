"""The library's progress bar: tqdm.auto, hidden by AUGMAX_PROGRESS=off (what batch notebook runs set)."""
from __future__ import annotations

import io

import pytest

from augmax_lib._progress import progress_off, tqdm


@pytest.mark.parametrize("value, off", [("off", True), ("0", True), (" False ", True), ("no", True),
                                        ("", False), ("on", False), ("auto", False)])
def test_progress_off_reads_the_environment(monkeypatch, value, off):
    monkeypatch.setenv("AUGMAX_PROGRESS", value)
    assert progress_off() is off


def test_bars_are_hidden_when_off_and_shown_otherwise(monkeypatch):
    monkeypatch.setenv("AUGMAX_PROGRESS", "off")
    stream = io.StringIO()
    assert list(tqdm(range(3), file=stream, disable=False)) == [0, 1, 2]
    assert stream.getvalue() == ""
    monkeypatch.delenv("AUGMAX_PROGRESS")
    stream = io.StringIO()
    assert list(tqdm(range(3), file=stream, desc="work")) == [0, 1, 2]
    assert "work" in stream.getvalue() and "3/3" in stream.getvalue()
