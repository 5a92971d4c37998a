"""``python -m saasfw.config._cli_entry``: the CLI without the installed console script."""

from saasfw.config._cli import main

raise SystemExit(main())
