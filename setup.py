"""Builds the compiled loop; AIOC_NO_EXTENSIONS=1 builds the pure-Python package only."""

import importlib.util
import pathlib

from setuptools import Extension, setup

HERE = pathlib.Path(__file__).parent


def _load_env():
    # The same parser the package uses at run time, loaded by path: the
    # package itself cannot be imported before it is built.
    spec = importlib.util.spec_from_file_location("_aioc_env", HERE / "src" / "aioc" / "_env.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _extensions():
    if _load_env().no_extensions():
        return []
    from Cython.Build import cythonize

    loop = Extension("aioc._loop_c", ["src/aioc/_loop_c.pyx"], extra_compile_args=["-O2"])
    return cythonize([loop], compiler_directives={"language_level": "3"})


setup(ext_modules=_extensions())
