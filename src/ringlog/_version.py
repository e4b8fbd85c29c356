"""The one place the version is written: the package, ``ringlog --version`` and the wheel's
metadata (pyproject.toml reads it as a dynamic version) all take it from here."""

__version__ = "0.1.0"
