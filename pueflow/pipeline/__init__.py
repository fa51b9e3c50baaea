"""The one ``process(batch)`` core and its numba kernels: readings in, KPI and quality rows out.

No I/O and no modes here: replay, consume and tune all drive the same core (see ``core.py``).
"""
