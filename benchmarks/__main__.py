"""``python -m benchmarks``: run every scenario and write the report."""

from __future__ import annotations

import sys

from ._cli import main

sys.exit(main())
