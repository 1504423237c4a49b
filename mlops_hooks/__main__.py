"""``python -m mlops_hooks`` is the ``mlops-hooks`` command."""

import sys

from mlops_hooks.cli import main

sys.exit(main())
