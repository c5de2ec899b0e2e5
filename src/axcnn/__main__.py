"""``python -m axcnn``: the same as the ``axcnn`` command."""

import sys

from .cli.main import main

if __name__ == "__main__":
    sys.exit(main())
