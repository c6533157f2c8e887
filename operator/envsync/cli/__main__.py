"""``python -m envsync.cli`` runs the command line."""

import sys

from envsync.cli import main

sys.exit(main())
