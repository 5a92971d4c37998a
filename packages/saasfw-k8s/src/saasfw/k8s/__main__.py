"""``python -m saasfw.k8s``: the same as the ``saasfw-k8s`` command."""

from saasfw.k8s._cli import main

raise SystemExit(main())
