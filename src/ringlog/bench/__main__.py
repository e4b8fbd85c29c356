"""``python -m ringlog.bench``: the same as ``ringlog bench``."""

from ringlog.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", *__import__("sys").argv[1:]]))
