"""The worker's glibc heap settings (streams/memory.py): they take effect here (Debian, glibc), and
trimming respects its interval. The RSS effect itself is a figure in bench/pipeline.py."""

from __future__ import annotations

import time

from streams.memory import Trimmer, cap_malloc_arenas


def test_arena_cap_is_accepted_by_glibc() -> None:
    assert cap_malloc_arenas(8) is True  # glibc's own default bound on 1-core counts: harmless here
    assert cap_malloc_arenas(0) is False  # 0 means "leave glibc's default"


def test_trimmer_waits_for_its_interval() -> None:
    assert Trimmer(0).maybe_trim() is False  # 0 = never
    assert Trimmer(3600).maybe_trim() is False  # not due yet
    due = Trimmer(60)
    due._last -= 61  # a minute has passed
    due.maybe_trim()  # trims (True if pages went back to the OS, False if there were none)
    assert due.maybe_trim() is False  # and the next call is a minute away again
    assert abs(due._last - time.monotonic()) < 5
