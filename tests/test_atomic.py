"""Atomic writes: whole files only, and the usual file mode (mkstemp's 0600 would hide results from others)."""

import os

from falign.base import atomic_files as atomic


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic.write_text(tmp_path / "table.csv", "a,b\n")
        atomic.write_bytes(tmp_path / "figure.png", b"\x89PNG")
    finally:
        os.umask(old)
    assert (tmp_path / "table.csv").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "figure.png").stat().st_mode & 0o777 == 0o644
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_failed_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "run.json"
    atomic.write_text(path, "old")
    try:
        with atomic.atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    except RuntimeError:
        pass
    assert path.read_text() == "old" and not list(tmp_path.glob(".*.tmp"))
