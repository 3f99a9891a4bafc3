"""flmarket/files.py: an atomic write leaves the target as it was or whole, and no temporary file behind."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from flmarket.files import write_json_atomically, write_text_atomically


def test_a_write_replaces_the_target_whole(tmp_path) -> None:
    target = tmp_path / "fragment.toml"
    target.write_text("old\n")
    write_text_atomically(target, "theta0 = 9.82\n")
    assert target.read_text() == "theta0 = 9.82\n" and sorted(tmp_path.iterdir()) == [target]
    write_json_atomically(tmp_path / "manifest.json", {"status": "finished", "b": 1})
    assert json.loads((tmp_path / "manifest.json").read_text()) == {"b": 1, "status": "finished"}


def test_a_failed_write_leaves_the_target_untouched_and_no_temporary_file(tmp_path) -> None:
    target = tmp_path / "page.html"
    target.write_text("before")
    with pytest.raises(UnicodeEncodeError):
        write_text_atomically(target, "half \udc80 written")  # a lone surrogate cannot be encoded as UTF-8
    assert target.read_text() == "before" and sorted(tmp_path.iterdir()) == [target]
    with pytest.raises(TypeError):
        write_json_atomically(target, {"not json": object()})
    assert target.read_text() == "before" and sorted(tmp_path.iterdir()) == [target]


def test_a_full_disk_names_the_target(tmp_path, monkeypatch) -> None:
    """A failed write names no file ('flmarket: error: No space left on device' said nothing of where)."""
    target = tmp_path / "manifest.json"

    class FullDisk:
        def __init__(self, path, *args, **kwargs) -> None:
            self.handle = open(path, *args, **kwargs)  # noqa: SIM115 (closed in __exit__)

        def __enter__(self) -> FullDisk:
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "open", lambda self, *args, **kwargs: FullDisk(self, *args, **kwargs))
    with pytest.raises(OSError, match="No space left on device") as caught:
        write_json_atomically(target, {"status": "finished"})
    assert caught.value.filename == str(target) and caught.value.errno == errno.ENOSPC
    assert sorted(tmp_path.iterdir()) == []
