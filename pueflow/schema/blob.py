"""Checkpoint blobs: a JSON header plus named numpy arrays in one ``.npz`` byte string.

The core's state and the dispatcher's state both travel in a partition's state record in
this form; the layout version in the header is checked on the way back in.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from pueflow.exceptions import StateError


def pack(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    """Return ``header`` (JSON) and ``arrays`` as one byte string.

    Parameters
    ----------
    header : dict
        JSON-serialisable; must hold ``"version"``.
    arrays : dict of str to numpy.ndarray
        Named arrays; the name ``"header"`` is reserved.
    """
    data = {**arrays, "header": np.frombuffer(json.dumps(header).encode(), np.uint8)}
    buf = io.BytesIO()
    # mypy matches an unpacked **dict against every keyword of savez, `allow_pickle: bool`
    # included; the names here are array names, never that
    np.savez(buf, **data)  # type: ignore[arg-type]
    return buf.getvalue()


def unpack(blob: bytes, what: str, version: int) -> tuple[dict[str, Any], Any]:
    """Return ``(header, arrays)`` of :func:`pack`'s bytes, checking the layout version.

    Parameters
    ----------
    blob : bytes
    what : str
        What the state is (``"state"``, ``"dispatch state"``), for messages.
    version : int
        The layout version this pueflow reads.

    Raises
    ------
    StateError
        The bytes are unreadable or of another layout version; the message says what to do.
    """
    try:
        z = np.load(io.BytesIO(blob), allow_pickle=False)
        header = json.loads(z["header"].tobytes())
    except Exception as exc:  # noqa: BLE001 - any decode failure means unusable state
        msg = f"checkpointed {what} is unreadable ({exc}); delete the state record to start fresh"
        raise StateError(msg) from None
    if header.get("version") != version:
        msg = (f"checkpointed {what} has format version {header.get('version')}; this pueflow "
               f"reads version {version}. Replay the history or reset the state topic")
        raise StateError(msg)
    return header, z
