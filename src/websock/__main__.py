"""``python -m websock``: see :mod:`websock.cli`."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
