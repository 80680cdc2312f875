"""``python -m gui`` starts FGVis Studio."""

import sys

from .app import main

sys.exit(main())
