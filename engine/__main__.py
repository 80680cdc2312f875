"""``python -m engine`` is the ``fgvis`` command line."""

import sys

from engine.cli import main

sys.exit(main())
