"""Installing, reinstalling, switching to an editable install and uninstalling leave nothing behind.

The README's own sequence once broke the package: ``pip install .`` and ``pysrm train`` wrote
Numba's kernel cache into ``site-packages/pysrm/**/__pycache__``; pip does not own those files, so
after ``pip install -e ".[docs]"`` (which uninstalls the normal install) a ``site-packages/pysrm``
folder without ``__init__.py`` stayed behind and was imported as an empty namespace package ahead
of the editable install (``ImportError: cannot import name '__version__' from 'pysrm' (unknown
location)``).  pysrm now keeps its kernels in the user's cache folder (:mod:`pysrm._kernel_cache`).

The test runs the whole sequence in a fresh virtual environment made from a copy of the
repository: normal install, train, reinstall over it, editable install (with an extra), train,
uninstall (nothing left in site-packages), reinstall.  To stay fast and offline it installs with
``--no-deps`` (the build backend, setuptools, is fetched as pip does for any user) and lets the new environment see this environment's
dependencies (numpy, numba, click, ...) through a ``.pth`` line; pysrm itself is only ever
imported from what the sequence installed.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _copy_repo(dst: Path) -> Path:
    """The files git tracks (or, without git, the source folders) copied to ``dst``."""
    try:
        files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True,
                               capture_output=True, text=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        files = []
    files = [f for f in files if f and (REPO / f).is_file()]
    if not files:
        for name in ("setup.cfg", "pyproject.toml", "README.md"):
            shutil.copy2(REPO / name, dst / name)
        for name in ("pysrm", "cli"):
            shutil.copytree(REPO / name, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
        return dst
    for f in files:
        (dst / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, dst / f)
    return dst


def _site_packages(venv: Path) -> Path:
    found = list((venv / "lib").glob("python*/site-packages")) + list((venv / "Lib").glob("site-packages"))
    assert found, f"no site-packages in {venv}"
    return found[0]


@pytest.fixture
def venv(tmp_path_factory):
    if shutil.which("git") is None and not (REPO / "setup.cfg").exists():
        pytest.skip("no repository to install from")
    root = tmp_path_factory.mktemp("install")
    env_dir = root / "venv"
    r = subprocess.run([sys.executable, "-m", "venv", str(env_dir)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot create a virtual environment here: {r.stderr.strip()[-300:]}")
    sp = _site_packages(env_dir)
    # this environment's dependencies (numpy, numba, click, ...), after the new environment's own
    # site-packages: a folder of links to everything in this environment's site-packages but pysrm itself
    # (which may be installed here, normally or editable, and must not shadow what the sequence installs)
    deps = root / "outer_deps"
    deps.mkdir()
    outer = Path(sysconfig.get_paths()["purelib"])
    for entry in outer.iterdir():
        name = entry.name.lower()
        if name.startswith(("pysrm", "__editable__")) or name.endswith(".pth"):
            continue
        (deps / entry.name).symlink_to(entry)
    (sp / "zz_outer_deps.pth").write_text(str(deps) + "\n")
    return root, env_dir, sp


def _run(args, cwd, env_dir, cache, check=True):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "NUMBA_CACHE"))}
    env["PATH"] = str(env_dir / "bin") + os.pathsep + env.get("PATH", "")
    env["PYSRM_CACHE_DIR"] = str(cache)
    env["NUMBA_NUM_THREADS"] = "1"
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert r.returncode == 0, f"{' '.join(map(str, args))} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


TRAIN = ["train", "--n-train", "32", "--n-test", "32", "--epochs", "1", "--batch-size", "16", "--net", "16x16x2-8-10",
         "--t-sample", "20"]


def test_install_editable_uninstall_reinstall(venv):
    root, env_dir, sp = venv
    src = _copy_repo(root / "src")
    work = root / "work"
    work.mkdir()
    cache = root / "kernel_cache"
    py = str(env_dir / "bin" / "python")
    pip = [py, "-m", "pip", "install", "-q", "--no-deps"]

    # 1. normal install, train
    _run(pip + [str(src)], work, env_dir, cache)
    assert (sp / "pysrm" / "__init__.py").is_file()
    r = _run([str(env_dir / "bin" / "pysrm")] + TRAIN + ["--out", str(work / "run1")], work, env_dir, cache)
    assert "test accuracy" in r.stdout
    # no compiled kernel inside the installed package; they are in the kernel cache
    assert not list((sp / "pysrm").rglob("*.nb[ic]")), "Numba cache files written into site-packages/pysrm"
    assert list(cache.rglob("*.nbi")), f"no kernel cache in {cache}"

    # 2. reinstall over it (an upgrade)
    _run(pip + ["--force-reinstall", str(src)], work, env_dir, cache)

    # 3. editable install with an extra (the README's Documentation step), train again
    _run(pip + ["-e", f"{src}[docs]"], work, env_dir, cache)
    assert not (sp / "pysrm").exists(), f"left behind by the normal install: {sorted((sp / 'pysrm').rglob('*'))[:5]}"
    r = _run([py, "-c", "import pysrm; print(pysrm.__version__, pysrm.__file__)"], work, env_dir, cache)
    assert str(src / "pysrm" / "__init__.py") in r.stdout
    r = _run([str(env_dir / "bin" / "pysrm")] + TRAIN + ["--out", str(work / "run2")], work, env_dir, cache)
    assert "test accuracy" in r.stdout
    assert not list((src / "pysrm").rglob("*.nb[ic]")), "Numba cache files written into the source tree"

    # 4. uninstall: nothing of pysrm is left in site-packages and pysrm cannot be imported
    _run([py, "-m", "pip", "uninstall", "-y", "-q", "pysrm-snn"], work, env_dir, cache)
    left = [p.name for p in sp.iterdir() if p.name.lower().startswith(("pysrm", "__editable__.pysrm"))]
    assert not left, f"left in site-packages after pip uninstall: {left}"
    r = _run([py, "-c", "import pysrm"], work, env_dir, cache, check=False)
    assert r.returncode != 0 and "No module named 'pysrm'" in r.stderr

    # 5. reinstall: works
    _run(pip + [str(src)], work, env_dir, cache)
    r = _run([str(env_dir / "bin" / "pysrm"), "--version"], work, env_dir, cache)
    assert r.stdout.strip()


def test_namespace_shadow_is_named(venv, tmp_path):
    """A folder named ``pysrm`` without ``__init__.py`` in the working directory shadows an
    editable install (Python imports it as a namespace package): the command names the cause."""
    root, env_dir, sp = venv
    src = _copy_repo(root / "src")
    _run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps",
          "-e", str(src)], tmp_path, env_dir, root / "kernel_cache")
    (tmp_path / "pysrm").mkdir()          # e.g. a clone named pysrm next to the script
    (tmp_path / "pysrm" / "README.md").write_text("a clone\n")
    r = _run([str(env_dir / "bin" / "python"), "-m", "pysrm_cli.main", "--version"], tmp_path, env_dir,
             root / "kernel_cache", check=False)
    assert r.returncode != 0
    assert "namespace package" in r.stderr and str(tmp_path / "pysrm") in r.stderr, r.stderr[-2000:]


def test_install_hints_name_the_distribution():
    """Every install hint in the code and the docs names ``pysrm-snn`` (by name) or ``.`` (a clone):
    ``pip install "pysrm[plot]"`` would install another project, pySRM, from PyPI."""
    import re
    wrong = re.compile(r"""(?<![\w./-])pysrm\[\w+\]|pip install -U? ?["']?pysrm(?![\w-])""")
    bad = []
    for folder in ("pysrm", "cli", "docs", "examples", "benchmarks", "tests"):
        for path in (REPO / folder).rglob("*"):
            if path.suffix not in (".py", ".md", ".toml", ".ipynb", ".sh", ".rst", ".cfg") or "_build" in path.parts:
                continue
            if path.name == "test_install.py":
                continue
            for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if wrong.search(line) and "another project" not in line:  # a warning that names the wrong one
                    bad.append(f"{path.relative_to(REPO)}:{n}: {line.strip()[:120]}")
    for name in ("README.md", "setup.cfg"):
        for n, line in enumerate((REPO / name).read_text().splitlines(), 1):
            if wrong.search(line) and "(pySRM, segmented regression models)" not in line:
                bad.append(f"{name}:{n}: {line.strip()[:120]}")
    assert not bad, "install hints that name the PyPI project 'pysrm' (another project):\n" + "\n".join(bad)


def test_every_package_of_pysrm_is_installed():
    """setup.cfg lists its packages explicitly: every folder of pysrm/ with an __init__.py must be there, or
    a normal (non-editable) install lacks it (the blocks and device packages were missing once)."""
    import configparser
    root = Path(__file__).resolve().parents[1]
    cfg = configparser.ConfigParser()
    cfg.read(root / "setup.cfg")
    listed = {p.strip() for p in cfg["options"]["packages"].split() if p.strip()}
    found = {".".join(p.parent.relative_to(root).parts) for p in (root / "pysrm").rglob("__init__.py")}
    assert found <= listed, f"packages missing from setup.cfg [options] packages: {sorted(found - listed)}"
