"""``python -m projections_service``: the same as the ``projections-service`` console script."""

import sys

from projections_service._main import main

sys.exit(main())
