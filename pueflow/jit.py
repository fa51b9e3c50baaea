"""All JIT options in one place.

``NUMBA_DISABLE_JIT=1`` turns every kernel into plain Python (CI runs the kernel tests once
that way so coverage sees their bodies).
"""

from __future__ import annotations

import numba

#: Options for every kernel: compiled once and cached on disk, no Python objects inside.
njit = numba.njit(cache=True, nogil=True)
#: The same, inlined into its callers at the numba IR level: for the small token readers of
#: the per-byte scans, where a call per token (and the reference counts of the arrays it
#: gets) costs more than the work. Compiling the callers takes longer (once, then cached).
njit_inline = numba.njit(cache=True, nogil=True, inline="always")
