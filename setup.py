"""Build hook for the optional C accelerator; all other metadata lives in pyproject.toml.

``hftkit._native`` holds the two per-level loops of a depth message (wire decimal -> ticks,
and a book side's level apply). It is optional: without a C compiler the build goes on
and hftkit runs its pure-Python twins of those loops (``hftkit.core.native``).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "hftkit._native",
            sources=["src/hftkit/_native.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
