"""``python -m varattn`` (and ``torchrun -m varattn``) runs the command line."""

import sys

from .cli import main

sys.exit(main())
