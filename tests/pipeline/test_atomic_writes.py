"""Atomic writes: readers see the old file or the complete new one; failures leave nothing behind."""
from __future__ import annotations

import errno
import os

import pytest

from vessel_seg.pipeline.store import atomic
from vessel_seg.pipeline.store.atomic import atomic_write_bytes, atomic_write_json, is_disk_full


def test_writes_the_complete_content_and_no_temp_file(tmp_path):
    target = tmp_path / "a.bin"
    atomic_write_bytes(target, b"x" * 100000)
    assert target.read_bytes() == b"x" * 100000
    assert os.listdir(str(tmp_path)) == ["a.bin"]


def test_replaces_an_existing_file(tmp_path):
    target = tmp_path / "r.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"a": 2})
    assert '"a": 2' in target.read_text()


def test_disk_full_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "p.png"
    target.write_bytes(b"old")

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic, "_write_all", full)
    with pytest.raises(OSError) as ei:
        atomic_write_bytes(target, b"new")
    assert is_disk_full(ei.value)
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(str(tmp_path))) == ["p.png"]


def test_temp_names_are_hidden_tmp_files_in_the_same_directory(tmp_path):
    tmp = atomic.temp_path_for(tmp_path / "img.png")
    assert tmp.parent == tmp_path and tmp.name.startswith(".") and tmp.name.endswith(".tmp")


def test_is_disk_full_only_for_space_errors():
    assert is_disk_full(OSError(errno.ENOSPC, "full"))
    assert not is_disk_full(OSError(errno.EACCES, "denied"))
    assert not is_disk_full(ValueError("x"))
