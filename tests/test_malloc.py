"""augmax_lib._malloc: glibc's malloc told to keep freed memory, with the values malloc.h documents."""
from __future__ import annotations

import sys

import pytest

from augmax_lib import _malloc


class _FakeLibc:
    def __init__(self, result=1):
        self.calls, self.result = [], result

    def mallopt(self, param, value):
        self.calls.append((param, value))
        return self.result


def test_sets_mmap_threshold_trim_threshold_and_top_pad(monkeypatch):
    monkeypatch.delenv(_malloc.OPT_OUT_ENV, raising=False)
    libc = _FakeLibc()
    assert _malloc.keep_freed_memory(libc) is True
    # malloc.h: M_TRIM_THRESHOLD -1, M_TOP_PAD -2, M_MMAP_THRESHOLD -3; glibc refuses an mmap threshold
    # above HEAP_MAX_SIZE / 2 = 32 MiB on 64-bit.
    assert dict(libc.calls) == {-3: 32 * 2 ** 20, -1: 2 ** 30, -2: 64 * 2 ** 20}


def test_reports_a_refused_setting(monkeypatch):
    monkeypatch.delenv(_malloc.OPT_OUT_ENV, raising=False)
    assert _malloc.keep_freed_memory(_FakeLibc(result=0)) is False


def test_opt_out_leaves_malloc_alone(monkeypatch):
    monkeypatch.setenv(_malloc.OPT_OUT_ENV, "default")
    libc = _FakeLibc()
    assert _malloc.keep_freed_memory(libc) is False and libc.calls == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_real_glibc_accepts_the_settings(monkeypatch):
    monkeypatch.delenv(_malloc.OPT_OUT_ENV, raising=False)
    libc = _malloc._glibc()
    if libc is None:
        pytest.skip("no glibc")
    assert _malloc.keep_freed_memory(libc) is True
