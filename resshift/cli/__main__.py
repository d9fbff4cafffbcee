"""``python -m resshift.cli``: the ``resshift`` command."""

import sys

from resshift.cli import main

sys.exit(main())
