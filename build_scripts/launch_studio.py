"""Entry script of the packaged app (PyInstaller runs this file): the same main() as ``fgvis-studio``."""

import sys

from gui.app import main

if __name__ == "__main__":
    sys.exit(main())
