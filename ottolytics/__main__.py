"""``python -m ottolytics``: the same as the ``ottolytics`` command."""

import sys

from .cli import main

sys.exit(main())
