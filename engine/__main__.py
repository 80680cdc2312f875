"""``python -m engine`` is the ``fgvis`` command line."""

import sys

from .cli import main

sys.exit(main())
