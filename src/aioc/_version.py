"""The package version, read by ``aioc.__version__`` and by the build (pyproject.toml)."""

__version__ = "0.1.0"
