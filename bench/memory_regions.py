"""Where a process's resident memory lives, by region, read from ``/proc/<pid>/smaps``.

RSS alone cannot tell a leak from a store that is meant to grow with its data: the worker holds the
embedded vector store in its own address space, and qdrant-edge keeps vectors, payloads and its
write-ahead log in file mappings (each vector and payload file mapped twice, once to read and once
to write, so RSS counts those pages twice). Splitting by region says which one grew.
"""

from __future__ import annotations

from pathlib import Path


def _region(name: str, data_dir: str) -> str:
    if name == "[heap]":
        return "heap: main malloc arena (brk)"
    if name == "":
        return "heap: anonymous maps (Python arenas, other malloc arenas, native pools)"
    if not name.startswith("/"):
        return name
    if data_dir and name.startswith(data_dir):
        if "/wal/" in name:
            return "vector store: write-ahead log"
        if "/vector_storage/" in name:
            return "vector store: vectors"
        if "/payload" in name:
            return "vector store: payloads and indexes"
        return "vector store: other files"
    return "other files (libraries, models)"


def resident_by_region(pid: int, data_dir: Path | str = "") -> dict[str, int]:
    """Resident bytes per region of ``pid``."""
    regions: dict[str, int] = {}
    current = ""
    store_dir = str(data_dir)
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if not fields[0].endswith(":"):  # a mapping header: "start-end perms offset dev inode [path]"
                current = _region(fields[5] if len(fields) >= 6 else "", store_dir)
            elif fields[0] == "Rss:":
                regions[current] = regions.get(current, 0) + int(fields[1]) * 1024
    return regions


def print_growth(before: dict[str, int], after: dict[str, int]) -> None:
    """One line per region that moved by at least 1 MiB, largest growth first."""
    names = set(before) | set(after)
    growth = {n: after.get(n, 0) - before.get(n, 0) for n in names}
    for name, delta in sorted(growth.items(), key=lambda item: -item[1]):
        if abs(delta) >= 2**20:
            was, now = before.get(name, 0) / 2**20, after.get(name, 0) / 2**20
            print(f"  {name:72s} {was:8.1f} -> {now:8.1f} MiB ({delta / 2**20:+.1f})")
