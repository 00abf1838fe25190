"""The one compiled module; everything else is in pyproject.toml.

indexer/core/_fingerprints.c fingerprints many keys in one call (docs/design.md §2,
"Fingerprints in C"). It needs a C compiler, Python's headers and libsodium's
(Debian: gcc python3-dev libsodium-dev).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "indexer.core._fingerprints",
            sources=["indexer/core/_fingerprints.c"],
            libraries=["sodium"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Werror"],
        )
    ]
)
