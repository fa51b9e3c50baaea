"""Entry of a tuning worker process: ``python -m pueflow.modes.tune.worker JOB INDEX LOCK``.

Started by :func:`pueflow.modes.tune.study.spawn_workers`; it loads the pickled job,
joins the study and runs trials until the study holds the requested total.
"""

from __future__ import annotations

import sys

from pueflow.modes.tune.study import worker_main

if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
