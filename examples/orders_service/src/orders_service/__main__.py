"""``python -m orders_service``: the same as the ``orders-service`` console script."""

import sys

from orders_service._main import main

sys.exit(main())
