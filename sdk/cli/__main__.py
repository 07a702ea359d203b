"""``python -m rtflow.cli``: the ``rtflow`` command."""

import sys

from rtflow.cli import main

sys.exit(main())
