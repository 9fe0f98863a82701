"""``pysrm sweep``: losses x seeds (x configs) as Dask tasks, then the aggregated report.

The command takes every ``pysrm train`` option (applied to every run).  Those
options are declared in :mod:`.main`, which itself imports this module to
register the command; to keep either import order working they are added to
the command when click first asks for its parameters (:class:`_SweepCommand`),
not when this module is imported.  Dask is imported only when the command runs.
"""
from __future__ import annotations

import sys

import click

from .paths import OutputDir

# train options that the sweep replaces by its own (--losses, --trials, --out SWEEP_DIR)
_REPLACED = ("loss", "trials", "out")


class _SweepCommand(click.Command):
    """A command that appends the ``pysrm train`` options to its own on first use."""

    _train_params_added = False

    def get_params(self, ctx):
        if not self._train_params_added:
            self._train_params_added = True
            self.params.extend(_train_params())
        return super().get_params(ctx)


def _train_params() -> list:
    from .main import TRAIN_OPTIONS
    params = [click.Option(["--delays/--no-delays", "delays"], default=None, help="trainable axonal delays")]
    params += [click.Option([opt, key], type=typ, default=None, help=help_)
               for opt, key, typ, help_ in TRAIN_OPTIONS if key not in _REPLACED]
    return params


def _losses(ctx, param, value):
    if value is None:
        return None
    from pysrm.config import LOSS_CHOICES, normalize_loss
    losses = [normalize_loss(v.strip()) for v in value.split(",") if v.strip()]  # spikemax_g = spikemax-g
    bad = [v for v in losses if v not in LOSS_CHOICES]
    if bad or not losses:
        raise click.BadParameter(f"unknown loss {', '.join(bad) or '(none)'}; choose from {', '.join(LOSS_CHOICES)}")
    if len(set(losses)) != len(losses):
        raise click.BadParameter("a loss is listed twice")
    return losses


def _config_names(files) -> list:
    from pathlib import Path
    names = [Path(f).stem for f in files]
    if len(set(names)) != len(names):
        raise click.BadParameter(f"the config files need distinct names (they name the run folders): {names}",
                                 param_hint="--config")
    return names


@click.command(cls=_SweepCommand)
@click.option("--config", "config_files", multiple=True, type=click.Path(dir_okay=False),
              help="TOML config file; repeat it to sweep several configs (runs go to <config name>/<loss>/seed_<s>)")
@click.option("--losses", callback=_losses,
              help="comma-separated losses, e.g. spike-rate,spikemax,spikemax-g,spikemax-s (spikemax_g, spikemax_s "
                   "are accepted too; default: the config's)")
@click.option("--trials", type=click.IntRange(min=1), default=None, help="seeds per loss: seed .. seed+K-1 (default: the config's)")
@click.option("--out", "out_dir", required=True, type=OutputDir(),
              help="SWEEP_DIR: run directories, sweep.json and the aggregated report")
@click.option("--scheduler", default=None,
              help="Dask scheduler address (tcp://HOST:8786) or scheduler JSON file; default: a local cluster")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="local cluster: worker processes (default: cores, at most one per run); "
                   "with --scheduler: wait for this many workers")
@click.option("--threads-per-run", type=click.IntRange(min=1), default=None,
              help="Numba threads per run (default: cores / workers on each machine)")
@click.option("--retries", type=click.IntRange(min=0), default=3, show_default=True,
              help="resubmissions of a run whose worker died")
@click.option("--shared-fs/--no-shared-fs", "shared", default=None,
              help="workers see SWEEP_DIR at the same path and train in it (default: detect per worker)")
@click.option("--scratch", default=None,
              help="folder on the workers for runs in progress when SWEEP_DIR is not shared (default: temp dir)")
@click.option("--dashboard-address", default=":8787", show_default=True,
              help="local cluster: dashboard address ('none': no dashboard)")
def sweep(config_files, losses, trials, out_dir, scheduler, workers, threads_per_run, retries, shared, scratch,
          dashboard_address, **flags):
    """Train every loss x seed (x config) as Dask tasks, then write the aggregated report.

    Without --scheduler the runs go to a local cluster of worker processes (workers x Numba threads <=
    cores).  With --scheduler they go to an existing Dask cluster (`dask scheduler` / `dask worker`,
    dask-jobqueue, ...).  Run directories land in SWEEP_DIR/runs/<loss>/seed_<s>, the table and figures
    in SWEEP_DIR/report.  Running the same command again skips complete runs.  Exit status: the number
    of failed runs (0: all complete).
    """
    from pysrm.rundir import DirectoryInUse
    from pysrm.sweep import DaskMissing, SweepError, plan_sweep, plural, require_dask, run_sweep

    from .main import option_error, resolve_config
    try:
        require_dask()
    except DaskMissing as e:
        raise click.ClickException(str(e))
    for name, v in (("--workers", workers), ("--threads-per-run", threads_per_run), ("--trials", trials)):
        if v is not None and v < 1:
            raise click.BadParameter("must be >= 1", param_hint=name)
    if retries < 0:
        raise click.BadParameter("must be >= 0", param_hint="--retries")
    try:
        if config_files:
            names = _config_names(config_files)
            configs = [(n, resolve_config(f, flags)) for n, f in zip(names, config_files)]
        else:
            configs = [(None, resolve_config(None, flags))]
        for _, cfg in configs:
            cfg.updated({"trials": 1}).validate()
        runs = plan_sweep(configs, losses, trials)
    except ValueError as e:  # a config check: named by the options given (--seed -1: seed must be ...)
        raise click.ClickException(option_error(e, flags))
    except FileNotFoundError as e:
        raise click.ClickException(str(e))

    cfg0 = configs[0][1]
    n_seeds = trials or cfg0.trials
    n_losses = len(losses or [cfg0.loss])
    click.echo(f"pysrm sweep: {plural(len(configs), 'config')} x {plural(n_losses, 'loss')} x "
               f"{plural(n_seeds, 'seed')} (from {cfg0.seed}); dataset "
               f"{', '.join(sorted({c.dataset for _, c in configs}))}, {plural(cfg0.epochs, 'epoch')}")
    try:
        res = run_sweep(runs, out_dir, scheduler=scheduler, workers=workers, threads_per_run=threads_per_run,
                        retries=retries, shared=shared, scratch=scratch,
                        dashboard=None if dashboard_address.lower() in ("", "none") else dashboard_address,
                        log=lambda line: click.echo(line))
    except (SweepError, DirectoryInUse) as e:  # DirectoryInUse: another sweep writes SWEEP_DIR now
        raise click.ClickException(str(e))
    except OSError as e:  # no scheduler at that address, ...
        raise click.ClickException(f"{type(e).__name__}: {e}")

    if res.report is not None:
        click.echo("")
        click.echo(res.report["markdown"].rstrip())
        figs = ", ".join(res.report["figures"]) or "skipped (pip install \".[plot]\" in a clone of pysrm, or pip install matplotlib)"
        click.echo(f"report: {res.out_dir / 'report'}/table.md, table.csv ({res.report['n_runs']} runs); "
                   f"figures: {figs}")
    elif res.report_error:
        click.echo(f"report not written: {res.report_error}")
    n_ok = len(res.done) + len(res.skipped)
    summary = (f"{n_ok} of {len(res.runs)} runs complete ({len(res.done)} trained now, {len(res.skipped)} "
               f"skipped), {res.n_failed} failed")
    if res.failed:
        summary += ":\n" + "\n".join(f"  {o.name}: {o.error} (see {o.run_dir}/error.txt)" for o in res.failed)
    click.echo(summary)
    if res.interrupted:
        sys.exit(130)
    sys.exit(min(res.n_failed, 125))
