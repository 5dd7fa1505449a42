"""The worker's heap settings (streams/memory.py): the glibc ones take effect here (Debian, glibc),
trimming respects its interval, and the startup heap is hidden from the cyclic collector. The RSS
effect is a figure in bench/pipeline.py, the collector's in bench/delivery.py."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator

import pytest

from streams.memory import Trimmer, cap_malloc_arenas, freeze_startup_heap


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


@pytest.fixture
def unfrozen_afterwards() -> Iterator[None]:
    yield
    gc.unfreeze()  # the rest of the session keeps the collector as it was


def test_startup_heap_is_hidden_from_the_collector(unfrozen_afterwards: None) -> None:
    long_lived = [{"vocabulary": i} for i in range(1000)]
    assert any(obj is long_lived for obj in gc.get_objects())

    hidden = freeze_startup_heap()

    assert hidden >= len(long_lived) and gc.get_freeze_count() == hidden
    assert not any(obj is long_lived for obj in gc.get_objects())
    created_later = [{"event": 1}]
    assert any(obj is created_later for obj in gc.get_objects())  # new objects are still collected
