"""The ``pysrm`` command-line application (installed as the package ``pysrm_cli``).

The folder is called ``cli/`` in the repository; setup.cfg maps it to the
distinct package name ``pysrm_cli`` so that it never clashes with other
distributions' top-level ``cli`` packages.  It only parses arguments, calls
:mod:`pysrm` and prints; all logic lives in the library.
"""

import pysrm as _pysrm

if getattr(_pysrm, "__file__", None) is None:  # imported as a namespace package: a folder shadows pysrm
    _where = ", ".join(str(p) for p in getattr(_pysrm, "__path__", [])) or "?"
    raise ImportError(
        f"'import pysrm' found a folder without __init__.py ({_where}) and imported it as an empty "
        "namespace package instead of the installed pysrm. Either a folder named 'pysrm' is in the "
        "current directory or on sys.path (e.g. a clone of the repository named pysrm: run from another "
        "folder or rename it), or an old install left site-packages/pysrm behind (delete that folder, "
        "then reinstall: pip install pysrm-snn, or from a clone pip install .).")
