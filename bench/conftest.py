"""bench/: micro-benchmarks collected only where what they measure exists."""

import importlib.util


def _has_engine() -> bool:
    """True once the matching engine (ringlog.engine.Engine) has landed."""
    if importlib.util.find_spec("ringlog.engine") is None:
        return False
    import ringlog.engine

    return all(hasattr(ringlog.engine, n) for n in ("Engine", "EngineConfig", "SymbolSpec"))


collect_ignore = [] if _has_engine() else ["test_micro_match.py"]
