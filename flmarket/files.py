"""Atomic text writes shared by the commands: a file is either left as it was or written whole.

The run manifest, the sweep index, `flmarket calibrate --out` and `flmarket report` all write this way: to a
temporary file beside the target (named for the target and this process), renamed over it, and removed if
anything fails, so nothing half-written is left behind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_text_atomically(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` through a temporary file in the same folder renamed over it."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("x", encoding="utf-8") as handle:  # "x": never clobbers a file another process made
            handle.write(text)
        temporary.replace(path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        if error.filename is None:  # a failed write or close (a full disk) names no file: name the target
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_json_atomically(path: Path, content: dict[str, Any]) -> None:
    """`content` as indented, key-sorted JSON, written atomically."""
    write_text_atomically(path, json.dumps(content, indent=2, sort_keys=True) + "\n")
