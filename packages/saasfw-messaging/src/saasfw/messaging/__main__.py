"""``python -m saasfw.messaging``: the same command line as ``saasfw-messaging``."""

from saasfw.messaging._cli import main

raise SystemExit(main())
