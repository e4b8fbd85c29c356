"""``python -m ringlog``: the same as the ``ringlog`` command."""

from ringlog.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
