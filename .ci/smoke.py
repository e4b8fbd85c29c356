"""Smoke test of an installed ringlog wheel, run from outside the checkout by .ci/wheel.

    every compiled module imports  ->  ringlog --version  ->  a small journal written through
    the public API passes `ringlog journal verify`  ->  `ringlog bench ring` outside a checkout
    is exit 2 with one line saying where the targets are  ->  (--cimport) a Cython module that
    cimports ringlog._ring compiles against the wheel's .pxd and headers and runs, and so does
    the README's Cython handler (its ```cython block), handled without the GIL by a Processor

Exits non-zero with the failing step's message.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
from pathlib import Path


def step(what: str) -> None:
    print(f"smoke: {what}", flush=True)


def main() -> int:
    import ringlog

    pkg = Path(ringlog.__file__).parent
    site = Path(sysconfig.get_paths()["purelib"])
    if site not in pkg.parents:
        sys.exit(f"smoke: ringlog imported from {pkg}, not from the venv's {site}")
    ext = sysconfig.get_config_var("EXT_SUFFIX")
    compiled = sorted(p for p in pkg.rglob(f"*{ext}"))
    if len(compiled) < 8:
        sys.exit(f"smoke: only {len(compiled)} compiled modules in {pkg}: a broken wheel")
    for so in compiled:
        name = ".".join(so.relative_to(pkg.parent).with_name(so.name[: -len(ext)]).parts)
        importlib.import_module(name)
    step(f"imported {len(compiled)} compiled modules from {pkg}")
    for name in ("Ring", "Journal", "Processor", "ProcessorConfig", "Breaker", "Engine"):
        getattr(ringlog, name)
    exe = Path(sys.executable).parent / "ringlog"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    if out.stdout.strip() != f"ringlog {ringlog.__version__}":
        sys.exit(f"smoke: ringlog --version said {out.stdout!r}")
    step(out.stdout.strip())
    with tempfile.TemporaryDirectory() as tmp:
        with ringlog.Journal(Path(tmp) / "j", segment_size=1 << 16, durability="none") as j:
            for i in range(1000):
                j.append(i.to_bytes(8, "little"), 1)
        r = subprocess.run([exe, "journal", "verify", Path(tmp) / "j"], capture_output=True,
                           text=True)
        if r.returncode != 0 or "1,000 records" not in r.stdout:
            sys.exit(f"smoke: journal verify: {r.returncode} {r.stdout} {r.stderr}")
        step(r.stdout.strip())
        bench(exe, Path(tmp))
        if "--cimport" in sys.argv:
            cimport(Path(tmp))
    return 0


def bench(exe: Path, tmp: Path) -> None:
    """The bench targets are the repository's bench/ folder: from an installed wheel, outside
    a checkout, asking for one is a usage error in one line that names the way out."""
    r = subprocess.run([exe, "bench", "ring", "--smoke", "--runs", "1"], capture_output=True,
                       text=True, cwd=tmp, timeout=600)
    err = r.stderr.strip()
    if r.returncode != 2 or len(err.splitlines()) != 1 or "from a clone" not in err \
            or "--handler" not in err:
        sys.exit(f"smoke: ringlog bench ring outside a checkout: exit {r.returncode}, "
                 f"stdout {r.stdout[-500:]!r}, stderr {r.stderr[-2000:]!r}")
    step(f"ringlog bench ring outside a checkout: exit 2, {err[:60]}...")


def cimport(tmp: Path) -> None:
    """Builds a module that cimports ringlog._ring from the installed .pxd files."""
    import ringlog

    (tmp / "uses_ring.pyx").write_text(textwrap.dedent("""\
        # cython: language_level=3
        from ringlog._ring cimport Ring

        def claim_one(Ring ring):
            cdef long long hi = ring.claim(1, 1000000)
            ring.publish_range(hi, hi)
            return hi
        """))
    (tmp / "setup.py").write_text(textwrap.dedent(f"""\
        from Cython.Build import cythonize
        from setuptools import Extension, setup
        setup(ext_modules=cythonize([Extension("uses_ring", ["uses_ring.pyx"],
              include_dirs={ringlog.get_include()!r})]), script_args=["build_ext", "-i", "-q"])
        """))
    subprocess.run([sys.executable, "setup.py"], cwd=tmp, check=True)
    sys.path.insert(0, str(tmp))
    uses_ring = importlib.import_module("uses_ring")
    ring = ringlog.Ring(64)
    if uses_ring.claim_one(ring) != 0:
        sys.exit("smoke: the cimported Ring claimed the wrong sequence")
    step("a Cython module cimports ringlog._ring from the wheel and claims a slot")
    readme_handler(tmp)


def readme_handler(tmp: Path) -> None:
    """Builds the README's Cython handler against the wheel and runs 1,000 events through a
    Processor while this thread holds the GIL (a switch interval longer than the wait): a
    handler with ``nogil_events`` is handled all the same."""
    import ringlog

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = readme.split("```cython\n")
    if len(blocks) != 2:
        sys.exit(f"smoke: the README has {len(blocks) - 1} ```cython blocks, expected one")
    (tmp / "readme_total.pyx").write_text(blocks[1].split("```")[0])
    (tmp / "setup_total.py").write_text(textwrap.dedent(f"""\
        from Cython.Build import cythonize
        from setuptools import Extension, setup
        setup(ext_modules=cythonize([Extension("readme_total", ["readme_total.pyx"],
              include_dirs={ringlog.get_include()!r})]), script_args=["build_ext", "-i", "-q"])
        """))
    subprocess.run([sys.executable, "setup_total.py"], cwd=tmp, check=True)
    h = importlib.import_module("readme_total").Total()
    outs: list = []
    cfg = ringlog.ProcessorConfig(durability="group", ring_capacity=4096)
    with ringlog.Processor(h, tmp / "total", cfg, on_output=outs.append) as p:
        p.publish((0).to_bytes(8, "little"), 1)
        p.drain(timeout=30)
        old = sys.getswitchinterval()
        sys.setswitchinterval(60.0)
        try:  # publish and wait holding the GIL throughout
            for i in range(1, 1001):
                p.publish(i.to_bytes(8, "little"), 1)
            end = time.monotonic() + 30
            while h.total != 500500 and time.monotonic() < end:
                pass
        finally:
            sys.setswitchinterval(old)
        p.drain(timeout=30)
    if h.total != 500500 or len(outs) != 1001 or \
            int.from_bytes(outs[-1].payload, "little", signed=True) != 500500:
        sys.exit(f"smoke: the README's handler: total {h.total}, {len(outs)} outputs")
    step("the README's Cython handler builds against the wheel and runs without the GIL")


if __name__ == "__main__":
    raise SystemExit(main())
