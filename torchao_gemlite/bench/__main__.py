"""``python -m torchao_gemlite.bench``: same as the ``torchao-gemlite-bench`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
