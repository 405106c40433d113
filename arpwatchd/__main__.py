"""`python -m arpwatchd` runs the command line."""

import sys

from arpwatchd.cli import main

sys.exit(main())
