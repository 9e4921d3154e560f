"""``python -m ottolytics``: the same as the ``ottolytics`` command."""

import sys

from ottolytics.cli.main import main

sys.exit(main())
