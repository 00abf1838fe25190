"""The identity core, the index format, private lookups and the build (docs/design.md §2)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("exposure-lookup")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
