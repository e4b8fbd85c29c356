"""Builds ringlog's Cython extensions from ext/ringlog/ into the package under src/.

Every ``ext/ringlog/**/X.pyx`` becomes the module ``ringlog.**.X``; nothing to list by hand.
Environment switches:
  RINGLOG_ONLY=_ring,_journal  build only these modules (by last name) - for parallel work
  RINGLOG_DEBUG=1              debug build: -O0 -g, line tracing, RINGLOG_DEBUG C checks
"""
import os
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).parent
EXT = HERE / "ext"
DEBUG = os.environ.get("RINGLOG_DEBUG", "0") == "1"
ONLY = {n for n in os.environ.get("RINGLOG_ONLY", "").split(",") if n}


def extensions():
    mods = []
    for pyx in sorted((EXT / "ringlog").rglob("*.pyx")):
        rel = pyx.relative_to(EXT).with_suffix("")
        name = ".".join(rel.parts)
        if ONLY and rel.name not in ONLY:
            continue
        cflags = ["-O0", "-g"] if DEBUG else ["-O3", "-fno-strict-aliasing"]
        mods.append(
            Extension(
                name,
                [str(pyx.relative_to(HERE))],
                include_dirs=[str(EXT / "ringlog" / "includes"), numpy.get_include()],
                define_macros=[
                    ("RINGLOG_DEBUG", "1" if DEBUG else "0"),
                    ("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
                ]
                + ([("CYTHON_TRACE_NOGIL", "1")] if DEBUG else []),
                extra_compile_args=cflags,
                libraries=["rt"] if os.name == "posix" and os.uname().sysname == "Linux" else [],
            )
        )
    return mods


setup(
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
