"""Build the optional Cython hot paths in _native/.

The package works without them (pure-Python twins take over), so a missing compiler or a
failed build is a warning, not an error, unless BZZZ_EDGE_REQUIRE_NATIVE=1 (CI sets it).
"""

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

REQUIRE_NATIVE = os.environ.get("BZZZ_EDGE_REQUIRE_NATIVE") == "1"
# Cython modules: extension name -> source in _native/.
NATIVE_MODULES = {
    "bzzz_edge._compiled.ucxl": "_native/ucxl.pyx",
    "bzzz_edge._compiled.dedup": "_native/dedup.pyx",
    "bzzz_edge._compiled.lz4": "_native/lz4.pyx",
}


def _warn(message: str) -> None:
    bar = "*" * 72
    sys.stderr.write(
        f"\n{bar}\nbzzz-edge: {message}\n"
        f"Installing the pure-Python fallbacks instead: everything works, slower.\n{bar}\n\n"
    )


class OptionalBuildExt(build_ext):
    """build_ext that degrades to the pure-Python twins when compiling fails."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler, no headers, Cython failure
            if REQUIRE_NATIVE:
                raise
            _warn(f"could not build the compiled hot paths ({exc}).")

    def build_extension(self, ext) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            if REQUIRE_NATIVE:
                raise
            _warn(f"could not build {ext.name} ({exc}).")


def _extensions() -> list:
    # BZZZ_EDGE_NATIVE_MODULES=ucxl,dedup builds a subset (handy while working on one module).
    only = {m for m in os.environ.get("BZZZ_EDGE_NATIVE_MODULES", "").split(",") if m}
    sources = {
        name: src
        for name, src in NATIVE_MODULES.items()
        if os.path.exists(src) and (not only or name.rsplit(".", 1)[1] in only)
    }
    if not sources:
        return []
    try:
        from Cython.Build import cythonize
        from setuptools import Extension
    except ImportError as exc:
        if REQUIRE_NATIVE:
            raise
        _warn(f"Cython is not available ({exc}).")
        return []
    exts = [Extension(name, [src], extra_compile_args=["-O3"]) for name, src in sources.items()]
    return cythonize(
        exts,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
        quiet=True,
    )


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
