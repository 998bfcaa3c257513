"""`python -m sendblue_lines.cli`: the `sendblue-lines` command."""

import sys

from . import main

sys.exit(main())
