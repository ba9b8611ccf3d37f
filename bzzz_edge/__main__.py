"""``python -m bzzz_edge`` runs the command line. Does I/O."""

import sys

from .cli import main

sys.exit(main())
