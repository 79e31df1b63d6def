"""``python -m sparse_ir`` is the ``sparse-ir`` command."""

import sys

from sparse_ir.cli import main

sys.exit(main())
