"""All JIT options in one place.

``NUMBA_DISABLE_JIT=1`` turns every kernel into plain Python (CI runs the kernel tests once
that way so coverage sees their bodies).
"""

from __future__ import annotations

import numba

#: Options for every kernel: compiled once and cached on disk, no Python objects inside.
njit = numba.njit(cache=True, nogil=True)
