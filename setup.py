"""The three compiled modules; everything else is in pyproject.toml.

indexer/core/_fingerprints.c fingerprints many keys in one call (docs/design.md §2,
"Fingerprints in C"); indexer/core/_querykeys.c makes a bulk line's canonical keys from
the request's memo (same section); indexer/index/_lookups.c looks fingerprints up
in a mapped generation. They need a C compiler, Python's headers and libsodium's
(Debian: gcc python3-dev libsodium-dev).
"""

from setuptools import Extension, setup

_FLAGS = ["-O2", "-Wall", "-Wextra", "-Werror"]

setup(
    ext_modules=[
        Extension(
            "indexer.core._fingerprints",
            sources=["indexer/core/_fingerprints.c"],
            libraries=["sodium"],
            extra_compile_args=_FLAGS,
        ),
        Extension(
            "indexer.core._querykeys",
            sources=["indexer/core/_querykeys.c"],
            extra_compile_args=_FLAGS,
        ),
        Extension(
            "indexer.index._lookups",
            sources=["indexer/index/_lookups.c"],
            extra_compile_args=_FLAGS,
        ),
    ]
)
