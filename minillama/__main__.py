"""``python -m minillama`` is the same as the ``minillama`` command."""

import sys

from minillama.cli import main

sys.exit(main())
