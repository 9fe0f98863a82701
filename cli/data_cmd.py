"""``pysrm data``: inspect and download the event datasets.

``pysrm data info PATH``
    PATH is a dataset folder (N-MNIST official or SLAYER list layout, DVS
    Gesture), the N-TIDIGITS ``.hdf5`` file, the word ``synthetic``, or a
    single event file (``.bs1``, ``.bs2``, ``.bin``, ``.aedat``).  Prints the
    sample counts per class, events per sample, duration and sensor size.
``pysrm data fetch nmnist|dvs-gesture|ntidigits --to DIR``
    Downloads from the public source (resuming partial downloads, showing
    progress, verifying the published MD5) and unpacks; where the source
    allows no direct download it prints where and how to get the files.
"""
from __future__ import annotations

import os
import sys
import time
import warnings

import click

from .paths import OutputDir

_FETCHABLE = ("nmnist", "dvs-gesture", "ntidigits")


@click.group("data")
def data():
    """Inspect and download event datasets."""


@data.command("info")
@click.argument("path")
@click.option("--dataset", "kind", type=click.Choice(["synthetic", "nmnist", "dvs-gesture", "ntidigits"]),
              default=None, help="Dataset type (default: detected from PATH).")
@click.option("--split", type=click.Choice(["train", "test", "both"]), default="both", show_default=True)
@click.option("--list-file", default=None, help="N-MNIST list layout: the list to use for --split (e.g. train1K.txt).")
@click.option("--max-samples", type=click.IntRange(min=1), default=None,
              help="Measure events/durations on the first N samples only (faster on full datasets).")
def info(path, kind, split, list_file, max_samples):
    """Print sample counts per class, events per sample, duration and sensor size of PATH."""
    from pysrm.data import detect, file_info, load_dataset, summarize
    from pysrm.data._paths import SplitMissing
    from pysrm.data.summary import EVENT_FILE_READERS, format_file_info, format_summary, unsupported_file

    if kind is None and path == "synthetic":
        kind = "synthetic"
    if kind is None and os.path.isfile(path) and unsupported_file(path):
        raise click.ClickException(unsupported_file(path))
    if kind is None and os.path.isfile(path) and os.path.splitext(path)[1].lower() in EVENT_FILE_READERS:
        try:
            click.echo(format_file_info(file_info(path)))
        except (ValueError, OSError) as e:
            raise click.ClickException(str(e))
        return
    if kind is None:
        if not os.path.exists(path):
            raise click.ClickException(f"{path}: no such file or directory")
        kind = detect(path)
        if kind is None:
            raise click.ClickException(
                f"{path}: cannot tell which dataset this is (expected an N-MNIST folder with Train/Test or "
                f"<id>.bs2 + train*.txt/test*.txt, a DVS Gesture folder with trials_to_train.txt, "
                f"n-tidigits.hdf5, or a .bs1/.bs2/.bin/.aedat file); pass --dataset "
                f"{'|'.join(['nmnist', 'dvs-gesture', 'ntidigits'])} if it is one of these layouts")
    splits = ("train", "test") if split == "both" else (split,)
    opts = {}
    if list_file is not None:
        if kind != "nmnist":
            raise click.ClickException("--list-file applies to N-MNIST only")
        if split == "both":
            raise click.ClickException("--list-file needs --split train or --split test")
        opts["list_file"] = list_file
    if kind == "nmnist":
        opts["jitter"] = 0
    t0 = time.perf_counter()
    missing = []
    for s in splits:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ds = load_dataset(kind, s, data_dir=None if kind == "synthetic" else path, **opts)
                summary = summarize(ds, max_samples=max_samples)
        except SplitMissing as e:
            if split != "both":
                raise click.ClickException(str(e))
            missing.append((s, e))  # summarise the split that is there; say which one is not
            continue
        except (ValueError, TypeError, OSError, ImportError) as e:
            raise click.ClickException(str(e))
        click.echo(format_summary(summary))
        for w in caught[:5]:
            click.echo(f"  warning: {w.message}", err=True)
        if len(caught) > 5:
            click.echo(f"  ... and {len(caught) - 5} more warning(s)", err=True)
    if len(missing) == len(splits):
        raise click.ClickException("; ".join(str(e) for _, e in missing))
    for s, e in missing:
        click.echo(f"no {s} split (only {', '.join(x for x in splits if x != s)} is there): "
                   f"{str(e).split('. Get it with')[0]}")
    click.echo(f"({time.perf_counter() - t0:.2f} s)")


def _progress_printer(stream=None):
    stream = stream or sys.stderr
    state = {"last": 0.0}

    def progress(done, total):
        now = time.monotonic()
        if now - state["last"] < 0.2 and (total is None or done < total):
            return
        state["last"] = now
        if total:
            msg = f"\r  {done / 1e6:9.1f} / {total / 1e6:.1f} MB  {100.0 * done / total:5.1f} %"
        else:
            msg = f"\r  {done / 1e6:9.1f} MB"
        stream.write(msg)
        if total is not None and done >= total:
            stream.write("\n")
        stream.flush()

    return progress


@data.command("fetch")
@click.argument("name", type=click.Choice(list(_FETCHABLE) + ["synthetic"]))
@click.option("--to", "to", default=None, type=OutputDir(),
              help="Target directory (default: $PYSRM_DATA_DIR/NAME or ~/.pysrm/data/NAME).")
@click.option("--force", is_flag=True, help="Download again even if the files are present.")
def fetch(name, to, force):
    """Download NAME from its public source (resumable, MD5-verified) and unpack it."""
    from pysrm.data.remote import DownloadError, ManualDownloadRequired, fetch as do_fetch

    try:
        where = do_fetch(name, to, progress=_progress_printer(), log=lambda m: click.echo(m, err=True), force=force)
    except ManualDownloadRequired as e:
        click.echo(str(e), err=True)
        sys.exit(2)
    except (DownloadError, ValueError, OSError) as e:
        raise click.ClickException(str(e))
    if where:
        click.echo(f"{name} is ready in {where}; load it with load_dataset({name!r}, data_dir={where!r})")
