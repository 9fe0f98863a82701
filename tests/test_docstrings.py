"""The public docstrings follow one numpydoc template (docs/docstrings.md).

For every module of :data:`MODULES`, every public callable -- each name of the module's ``__all__``, or
else each name not starting with ``_`` that the module itself defines, and the public methods of its
public classes -- has a docstring that

* has a ``Parameters`` section when its signature has parameters (besides ``self``/``cls``), and that
  section names every one of them (``*args``/``**options`` as written);
* has ``Returns`` (or ``Yields`` for a generator) when its body returns a value;
* has ``Raises`` when its body contains a ``raise`` statement;
* parses: its section headers are numpydoc's, each once, in numpydoc's order, underlined with dashes of
  the header's length (``numpydoc.docscrape`` also parses it without warnings where numpydoc is
  installed).

A class's constructor is documented in the class docstring (numpydoc's convention); properties are
attributes (a one-line summary, no sections required).  Exception and warning classes need only a
summary.

To bring more modules under the template, add them to :data:`MODULES`.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import re
import textwrap
import warnings

import pytest

#: the modules whose public docstrings follow the template; extend this list as modules are converted
MODULES = [
    "pysrm.ops.psp", "pysrm.ops.spike", "pysrm.ops.dense", "pysrm.ops.conv", "pysrm.ops.pool", "pysrm.ops.delay",
    "pysrm.ops.srm", "pysrm.ops.dropout", "pysrm.layers", "pysrm.network", "pysrm.functional",
    "pysrm.params",
    "pysrm.responses",
    "pysrm.events",
    "pysrm.data.base",
    "pysrm.data.binning",
    "pysrm.data.dvs_gesture",
    "pysrm.data.formats",
    "pysrm.data.loader",
    "pysrm.data.nmnist",
    "pysrm.data.ntidigits",
    "pysrm.data.registry",
    "pysrm.data.remote",
    "pysrm.data.summary",
    "pysrm.data.synthetic",
    "pysrm.data.tonic_adapter",
    "pysrm.settings",
    "pysrm.losses",
]

#: numpydoc's sections, in numpydoc's order
SECTIONS = ["Parameters", "Attributes", "Returns", "Yields", "Receives", "Other Parameters", "Raises",
            "Warns", "Warnings", "See Also", "Notes", "References", "Examples", "Methods"]


# ----------------------------------------------------------------------------------------------- collection
def _defined_in(obj, module) -> bool:
    return getattr(obj, "__module__", None) == module.__name__


def _public_objects(module):
    """``(qualified name, object, kind)`` of the public callables of ``module``; kind is 'function',
    'class', 'method' or 'property'."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in vars(module) if not n.startswith("_")]
    out = []
    for name in names:
        obj = getattr(module, name)
        if inspect.isfunction(obj) and _defined_in(obj, module):
            out.append((f"{module.__name__}.{name}", obj, "function"))
        elif inspect.isclass(obj) and _defined_in(obj, module):
            out.append((f"{module.__name__}.{name}", obj, "class"))
            for mname, attr in vars(obj).items():
                if mname.startswith("_"):
                    continue
                qual = f"{module.__name__}.{name}.{mname}"
                if isinstance(attr, property):
                    out.append((qual, attr.fget, "property"))
                elif isinstance(attr, (classmethod, staticmethod)):
                    out.append((qual, attr.__func__, "method"))
                elif inspect.isfunction(attr):
                    out.append((qual, attr, "method"))
    return out


def _cases():
    cases = []
    for modname in MODULES:
        module = importlib.import_module(modname)
        cases.extend(_public_objects(module))
    return cases


CASES = _cases()


# ----------------------------------------------------------------------------------------------- parsing
def _sections(doc: str) -> list:
    """``[(header, body lines)]`` of a cleaned docstring; the text before the first header is ``''``.
    Raises AssertionError for a malformed header."""
    lines = doc.splitlines()
    out = [("", [])]
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and re.fullmatch(r"\s*-{3,}\s*", nxt) and not re.fullmatch(r"\s*-+\s*", line):
            header = line.strip()
            assert header in SECTIONS, f"unknown section {header!r} (numpydoc knows {SECTIONS})"
            assert len(nxt.strip()) == len(header), f"section {header!r}: underline length {len(nxt.strip())}"
            assert line == line.lstrip(), f"section {header!r} is indented"
            out.append((header, []))
            i += 2
            continue
        out[-1][1].append(line)
        i += 1
    headers = [h for h, _ in out[1:]]
    assert len(headers) == len(set(headers)), f"a section twice: {headers}"
    order = [SECTIONS.index(h) for h in headers]
    assert order == sorted(order), f"sections out of numpydoc's order: {headers}"
    return out


def _entry_names(body: list) -> list:
    """Names of the entries of a Parameters-like section: the unindented lines ``name : type`` (or a bare
    ``name``); ``a, b : int`` gives both."""
    names = []
    for line in body:
        if not line.strip() or line[0].isspace():
            continue
        head = line.split(" : ", 1)[0].strip()
        names.extend(n.strip() for n in head.split(","))
    return names


def _function_node(func):
    try:
        src = textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError):
        return None
    tree = ast.parse(src)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return node
    return None


def _own_nodes(fnode):
    """The nodes of a function's body, not descending into nested functions, lambdas or classes."""
    stack = list(fnode.body)
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                stack.append(child)


def _behaviour(func):
    """``(returns a value, is a generator, raises)`` from the function's source."""
    fnode = _function_node(func)
    if fnode is None:
        return False, False, False
    returns = gen = raises = False
    for node in _own_nodes(fnode):
        if isinstance(node, ast.Return) and node.value is not None and not (
                isinstance(node.value, ast.Constant) and node.value.value is None):
            returns = True
        elif isinstance(node, (ast.Yield, ast.YieldFrom)):
            gen = True
        elif isinstance(node, ast.Raise) and node.exc is not None:
            raises = True
    return returns, gen, raises


def _parameters(func, skip_first: bool) -> list:
    """The documented names of a signature's parameters: ``x``, ``*args``, ``**options``."""
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return []
    params = list(sig.parameters.values())
    if skip_first and params and params[0].name in ("self", "cls"):
        params = params[1:]
    out = []
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            out.append("*" + p.name)
        elif p.kind is p.VAR_KEYWORD:
            out.append("**" + p.name)
        else:
            out.append(p.name)
    return out


def _numpydoc_warnings(obj, kind):
    try:
        from numpydoc import docscrape
    except ImportError:
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if kind == "class":
            docscrape.ClassDoc(obj, config={"show_class_members": False})
        else:
            docscrape.FunctionDoc(obj)
    return [str(w.message) for w in caught]


# ----------------------------------------------------------------------------------------------- the test
def test_cases_found():
    """The collection finds the modules' public callables (a broken collection would pass every case)."""
    names = {name for name, _, _ in CASES}
    for expected in ("pysrm.params.NeuronParams", "pysrm.responses.srm_kernel", "pysrm.events.SpikeEvents.to_dense",
                     "pysrm.data.base.from_arrays", "pysrm.data.binning.bin_events", "pysrm.data.loader.DataLoader"):
        assert expected in names, expected


@pytest.mark.parametrize("name, obj, kind", CASES, ids=[c[0] for c in CASES])
def test_docstring_follows_template(name, obj, kind):
    doc = inspect.getdoc(obj)
    assert doc and doc.strip(), f"{name} has no docstring"
    summary = doc.strip().splitlines()[0]
    assert summary.strip(), f"{name}: the docstring must open with a one-line summary"
    sections = _sections(doc)
    headers = {h: body for h, body in sections[1:]}

    if kind == "property":
        return
    if kind == "class" and issubclass(obj, BaseException):
        return

    func = obj.__init__ if kind == "class" else obj
    if kind == "class" and func is object.__init__:
        params = []
    else:
        params = _parameters(func, skip_first=kind in ("class", "method"))
    if params:
        assert "Parameters" in headers, f"{name}: takes {params} but has no Parameters section"
        documented = _entry_names(headers["Parameters"])
        missing = [p for p in params if p not in documented]
        assert not missing, f"{name}: parameters {missing} are not in its Parameters section ({documented})"
        extra = [p for p in documented if p not in params]
        assert not extra, f"{name}: its Parameters section names {extra}, which its signature lacks ({params})"

    returns, gen, raises = _behaviour(func)
    if kind != "class":
        if gen:
            assert "Yields" in headers, f"{name} is a generator but has no Yields section"
        elif returns:
            assert "Returns" in headers, f"{name} returns a value but has no Returns section"
    if raises:
        assert "Raises" in headers, f"{name} raises but has no Raises section"

    caught = _numpydoc_warnings(obj, kind)
    if caught:
        pytest.fail(f"{name}: numpydoc warns: {caught}")
