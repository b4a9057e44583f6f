"""The services' clock, and how tests move it forward."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import pytest

from govmesh import clock


def test_without_an_offset_file_it_is_the_system_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOVMESH_CLOCK_OFFSET_FILE", raising=False)
    before = datetime.datetime.now(datetime.UTC)
    now = clock.now()
    assert now.tzinfo is not None and before <= now <= datetime.datetime.now(datetime.UTC)


def test_an_offset_file_moves_it_and_is_reread_when_it_changes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    offset = tmp_path / "offset"
    monkeypatch.setenv("GOVMESH_CLOCK_OFFSET_FILE", str(offset))
    assert abs((clock.now() - datetime.datetime.now(datetime.UTC)).total_seconds()) < 1  # file absent
    offset.write_text(str(48 * 3600))
    ahead = clock.now() - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(hours=47, minutes=59) < ahead < datetime.timedelta(hours=48, minutes=1)
    offset.write_text(str(-3600))
    os.utime(offset, (1, 1))  # a new mtime even on coarse filesystems
    behind = datetime.datetime.now(datetime.UTC) - clock.now()
    assert datetime.timedelta(minutes=59) < behind < datetime.timedelta(minutes=61)
