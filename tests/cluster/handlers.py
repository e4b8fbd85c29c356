"""Handler factories the replica child processes load by name in the cluster tests."""

from ringlog.engine import Engine
from ringlog.engine.flow import demo_config


def skewed_engine() -> Engine:
    """The demo engine with one symbol fewer: the same commands give another state (a
    replica that runs it must diverge at the first checkpoint)."""
    return Engine(demo_config(symbols=3, max_orders=1 << 20))
