"""``python -m saasfw.config``: the ``saasfw-config`` CLI without the console script."""

from saasfw.config._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
