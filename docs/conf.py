"""Sphinx configuration of pysrm's documentation (API reference from the docstrings + the Markdown pages).

Build (from the repository root, with ``pip install -e ".[docs]"``)::

    sphinx-build -W --keep-going -b html docs docs/_build/html

``-W`` turns every warning into an error: a malformed docstring, an unknown cross-reference (the build
is nitpicky) or a broken link between the pages fails the build (``tests/test_docs.py`` runs it).

The tutorial notebook lives in ``examples/tutorial.ipynb``; it is copied into ``docs/_generated/`` at
build time and rendered by myst-nb.  By default it is executed during the build (its figures appear on
the page); ``-D nb_execution_mode=off`` renders its code only (what the test does: the notebook itself
is executed by ``tests/test_tutorial.py``).
"""
from __future__ import annotations

import importlib
import os
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # pysrm from this checkout (also when it is not installed)

os.environ.setdefault("MPLBACKEND", "Agg")

import pysrm  # noqa: E402

project = "pysrm"
author = "the pysrm developers"
copyright = "pysrm developers, MIT licence"
version = release = pysrm.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_nb",  # Markdown pages (myst-parser) and the tutorial notebook
    # MathJax copied into the built site (no CDN): the equations render offline too
    "sphinx-mathjax-offline",
]

root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
templates_path: list = []

# -- warnings: the build runs with -W, so every one of these is an error -----------------------------------
nitpicky = True  # every :func:/:class:/:mod: reference in a docstring or page must resolve
# targets outside pysrm (no intersphinx: the build must work offline) and informal type words of the
# docstrings' parameter lists
nitpick_ignore_regex = [
    ("py:.*", r"(numpy|np|numba|scipy|click|tonic|dask|distributed|threadpoolctl|pathlib|os|collections|contextvars|"
              r"typing|contextlib|dataclasses|concurrent|h5py|matplotlib|io)(\..*)?"),
    ("py:.*", r"(int|float|bool|str|bytes|list|tuple|dict|set|object|callable|None|Path|ndarray|"
              r"Exception|ValueError|TypeError|RuntimeError|OSError|KeyError|FileNotFoundError|"
              r"NotImplementedError|KeyboardInterrupt|array|array_like|sequence|iterable|optional|"
              r"float32|float64|int64|int32|int8|uint8|bool_|dtype|DeviceNDArray|Any|Iterator|Callable|"
              r"Sequence|Iterable|Mapping|Generator|Optional|Union)"),
]

# -- autodoc / napoleon -------------------------------------------------------------------------------------
autodoc_default_options = {"members": True, "undoc-members": True, "member-order": "bysource"}
autodoc_typehints = "none"  # signatures as written; types are in the docstrings' prose (numpy style)
autodoc_class_signature = "mixed"
autodoc_inherit_docstrings = False
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_param = False  # keep "x : ndarray (N, C, H, W, T)" as written, not as :type: fields
napoleon_use_ivar = True
napoleon_preprocess_types = False

# -- MyST / myst-nb -----------------------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3  # [text](page.md#a-heading) links resolve to headings
nb_execution_mode = "auto"  # execute the tutorial during a full build (see the module docstring)
nb_execution_timeout = 300
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

# -- HTML ----------------------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"pysrm {release}"
html_static_path: list = []
html_show_sourcelink = False

# -- the pages that live outside docs/ ----------------------------------------------------------------------
GENERATED = DOCS / "_generated"
_LINK = re.compile(r"(?<!!)\[([^\]]+)\]\(([^)\s]+)\)")


def _rewrite_links(text: str, src_dir: Path) -> str:
    """Links of a Markdown file from ``src_dir``, made to work from ``docs/``: a link to a page of docs/
    becomes a page link, a link to another file of the repository a download link ({download} role),
    URLs and anchors stay; a link to nothing stays as it is (and the build reports it)."""
    def repl(m):
        label, target = m.group(1), m.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            return m.group(0)
        path, _, anchor = target.partition("#")
        dest = (src_dir / path).resolve()
        if not dest.exists():
            return m.group(0)
        rel = os.path.relpath(dest, DOCS).replace(os.sep, "/")
        if dest.suffix == ".md" and DOCS in dest.parents:
            return f"[{label}]({rel}{'#' + anchor if anchor else ''})"
        plain = " ".join(label.replace("`", "").split())
        return f"{{download}}`{plain} <{rel}>`"
    return _LINK.sub(repl, text)


def _copy_outside_pages():
    """Copy the pages that live outside docs/ into docs/_generated/: the tutorial notebook (examples/),
    rendered from there, and the benchmark record (benchmarks/RESULTS.md, its links rewritten),
    included by docs/benchmarks.md."""
    GENERATED.mkdir(exist_ok=True)
    pages = {
        "tutorial.ipynb": (ROOT / "examples" / "tutorial.ipynb").read_bytes(),
        "RESULTS.md": _rewrite_links((ROOT / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8"),
                                     ROOT / "benchmarks").encode("utf-8"),
    }
    for name, data in pages.items():
        dst = GENERATED / name
        if not dst.exists() or dst.read_bytes() != data:
            dst.write_bytes(data)


_copy_outside_pages()
exclude_patterns.append("_generated/RESULTS.md")  # included by benchmarks.md, not a page of its own


# -- cross-references to re-exported names ------------------------------------------------------------------
def _canonical_target(target: str):
    """``pysrm.functional.psp`` -> ``pysrm.ops.psp.psp`` (the module that defines it), else None."""
    if not target.startswith("pysrm."):
        return None
    parts = target.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for name in parts[i:]:
                obj = getattr(obj, name)
        except AttributeError:
            return None
        module = getattr(obj, "__module__", None)
        qualname = getattr(obj, "__qualname__", None)
        if module and qualname and "<" not in qualname:
            canonical = f"{module}.{qualname}"
            return canonical if canonical != target else None
        return None
    return None


def _resolve_reexports(app, env, node, contnode):
    """A reference to a name re-exported by another module (``pysrm.functional.psp``,
    ``pysrm.data.from_tonic``, ``pysrm.NeuronParams``, or ``SpikeEvents`` inside a module that imports
    it) resolves to where the name is documented."""
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "").lstrip(".~")
    module, cls = node.get("py:module"), node.get("py:class")
    candidates = [target]
    if module and not target.startswith("pysrm."):
        if cls:
            candidates.append(f"{module}.{cls}.{target}")
        candidates.append(f"{module}.{target}")
    domain = env.get_domain("py")
    for candidate in candidates:
        canonical = _canonical_target(candidate)
        if canonical is None:
            continue
        new = node.deepcopy()
        new["reftarget"] = canonical
        found = domain.resolve_xref(env, node.get("refdoc"), app.builder, node.get("reftype"), canonical, new,
                                    contnode)
        if found is not None:
            return found
    return None


def _protect_attribute_comments(app, what, name, obj, options, lines):
    """napoleon reads the first line of an attribute's or module constant's docstring as ``type: text``;
    pysrm's ``#:`` comments are prose (``N-MNIST: events with ...``), so they are kept as written."""
    if what in ("attribute", "data") and lines and lines[0].strip():
        lines[0] = ": " + lines[0]  # an empty "type" before the first colon: napoleon keeps the rest


def setup(app):
    app.connect("missing-reference", _resolve_reexports)
    app.connect("autodoc-process-docstring", _protect_attribute_comments, priority=400)
