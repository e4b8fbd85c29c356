"""Builds ringlog's Cython extensions from ext/ringlog/ into the package under src/.

Every ``ext/ringlog/**/X.pyx`` becomes the module ``ringlog.**.X``; nothing to list by hand.
A build that finds no .pyx stops with an error: a wheel without its extensions is broken, and
must never be produced quietly (an sdist carries ext/ with the .pyx, .pxd and .h files).

    ext/ringlog/_ring.pyx           -> ringlog/_ring.cpython-3XX-*.so    (stripped: -g0, -s)
    ext/ringlog/**/*.pxd, *.h       -> ringlog/**/ in the wheel, so that other Cython code can
                                       `cimport ringlog._ring` (headers: ringlog.get_include())

Environment switches:
  RINGLOG_ONLY=_ring,_journal  build only these modules (by last name) - for parallel work
  RINGLOG_DEBUG=1              debug build: -O0 -g, line tracing, RINGLOG_DEBUG C checks
  RINGLOG_SYMBOLS=1            the release code (-O3) with symbols, not stripped: for
                               profilers (bench/loop_callgrind.py, perf)
"""
import os
import shutil
import sys
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent
EXT = HERE / "ext"
DEBUG = os.environ.get("RINGLOG_DEBUG", "0") == "1"
SYMBOLS = os.environ.get("RINGLOG_SYMBOLS", "0") == "1"
ONLY = {n for n in os.environ.get("RINGLOG_ONLY", "").split(",") if n}
# what Cython code that cimports ringlog needs beside the compiled modules
CIMPORT_FILES = ("*.pxd", "*.h")


def extensions():
    mods, found = [], []
    for pyx in sorted((EXT / "ringlog").rglob("*.pyx")):
        rel = pyx.relative_to(EXT).with_suffix("")
        name = ".".join(rel.parts)
        found.append(rel.name)
        if ONLY and rel.name not in ONLY:
            continue
        # release builds carry no debug symbols: 15 MB of DWARF otherwise, 2.6 MB without
        cflags = ["-O0", "-g"] if DEBUG else ["-O3", "-g" if SYMBOLS else "-g0",
                                               "-fno-strict-aliasing"]
        mods.append(
            Extension(
                name,
                [str(pyx.relative_to(HERE))],
                include_dirs=[str(EXT / "ringlog" / "includes"), str(EXT / "ringlog" / "engine"),
                              numpy.get_include()],
                define_macros=[
                    ("RINGLOG_DEBUG", "1" if DEBUG else "0"),
                    ("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
                ]
                + ([("CYTHON_TRACE_NOGIL", "1")] if DEBUG else []),
                extra_compile_args=cflags,
                extra_link_args=[] if DEBUG or SYMBOLS else ["-s"],
                libraries=["rt"] if os.name == "posix" and os.uname().sysname == "Linux" else [],
            )
        )
    if not found:
        sys.exit(f"ringlog: no Cython sources under {EXT / 'ringlog'}: refusing to build a "
                 "package without its extensions (an sdist must carry ext/)")
    unknown = ONLY - set(found)
    if unknown:
        sys.exit(f"ringlog: RINGLOG_ONLY names no module {sorted(unknown)}; "
                 f"modules: {', '.join(sorted(found))}")
    return mods


class build_py_with_cimport_files(build_py):
    """Copies ext/ringlog/**/*.pxd and *.h into the built package (not for an editable
    install: there ext/ is on Cython's path already)."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for pattern in CIMPORT_FILES:
            for src in (EXT / "ringlog").rglob(pattern):
                dst = Path(self.build_lib) / src.relative_to(EXT)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)


setup(
    cmdclass={"build_py": build_py_with_cimport_files},
    # compile the extensions side by side (the C of one module takes ~10 s at -O3)
    options={"build_ext": {"parallel": int(os.environ.get("RINGLOG_BUILD_JOBS", "2"))}},
    ext_modules=cythonize(
        extensions(),
        include_path=[str(EXT)],
        language_level=3,
        annotate=DEBUG,
        nthreads=int(os.environ.get("RINGLOG_BUILD_JOBS", "2")),
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
            "linetrace": DEBUG,
            "profile": False,
        },
    ),
)
