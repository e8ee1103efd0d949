"""``python -m varattn`` (and ``torchrun -m varattn``) runs the command line."""

import sys

from varattn.cli.main import main

sys.exit(main())
