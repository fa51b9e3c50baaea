"""``python -m pueflow.cli VERB``: the same as the ``pueflow`` command."""

import sys

from pueflow.cli.app import main

sys.exit(main())
