"""The ``pysrm`` command-line application (installed as the package ``pysrm_cli``).

The folder is called ``cli/`` in the repository; setup.cfg maps it to the
distinct package name ``pysrm_cli`` so that it never clashes with other
distributions' top-level ``cli`` packages.  It only parses arguments, calls
:mod:`pysrm` and prints; all logic lives in the library.
"""
