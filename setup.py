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
    env = _load_env()
    if env.no_extensions():
        return []
    from Cython.Build import cythonize

    # AIOC_NO_EPOLL=1 builds the compiled loop with the select backend only,
    # as it is built off Linux, where neither <sys/epoll.h> nor io_uring exists.
    macros = [("AIOC_NO_EPOLL", "1"), ("AIOC_NO_IO_URING", "1")] if env.flag("AIOC_NO_EPOLL") else []
    loop = Extension(
        "aioc._loop_c",
        ["src/aioc/_loop_c.pyx"],
        include_dirs=["src/aioc"],
        define_macros=macros,
        extra_compile_args=["-O2"],
        depends=[f"src/aioc/_compiled/{path.name}" for path in (HERE / "src" / "aioc" / "_compiled").iterdir()],
    )
    return cythonize([loop], compiler_directives={"language_level": "3"})


setup(ext_modules=_extensions())
