"""``pysrm export`` and ``pysrm eval --nir``: a run's network to a NIR file, and a NIR graph evaluated.

``pysrm export RUN_DIR --format nir --out FILE.nir [--checkpoint last|best] [--neuron srm|cubalif] [--overwrite]``
    Writes the run's network (the checkpoint chosen as ``pysrm eval`` chooses it: ``last`` by default,
    ``best`` falls back to ``last`` when the run kept none) as a NIR graph (:func:`pysrm.nir.write_nir`:
    a temporary file, read back, then renamed; an existing FILE is kept unless ``--overwrite``).
``pysrm eval --nir FILE.nir [RUN_DIR | --dataset NAME --data-dir DIR] [--if-tau-sr MS]``
    Imports the graph (:func:`pysrm.nir.from_nir`; approximations are printed as warnings) and
    evaluates it on the test split of RUN_DIR's dataset, or of ``--dataset``.

Both need the optional ``nir`` package; without it they say what to install.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import click

from .paths import OutputPrefix


def _nir_module():
    """:mod:`pysrm.nir` with ``nir`` importable, else a ClickException with the install hint."""
    import pysrm.nir as pnir
    try:
        pnir._nir()
    except ImportError as e:
        raise click.ClickException(str(e))
    return pnir


@click.command("export")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["nir"]), default="nir", show_default=True,
              help="file format (NIR, the Neuromorphic Intermediate Representation)")
@click.option("--out", "out", required=True, type=OutputPrefix(suffixes=("",)),
              help="the file to write (FILE.nir; its folder is made if missing)")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="last", show_default=True,
              help="as pysrm eval: 'last' is the final network, 'best' the one selected on the validation split "
                   "(or the test set when the run had none)")
@click.option("--neuron", type=click.Choice(["srm", "cubalif"]), default="srm", show_default=True,
              help="srm: each SRM layer as the exact CubaLI + Threshold + refractory CubaLI composite; cubalif: one "
                   "CubaLIF per layer (reset instead of the refractory response; an approximation, docs/nir.md)")
@click.option("--overwrite", is_flag=True, help="replace FILE if it exists (by default an existing file is kept)")
def export(run_dir, fmt, out, checkpoint, neuron, overwrite):
    """Write the trained network of RUN_DIR as a NIR graph (docs/nir.md)."""
    pnir = _nir_module()
    from pysrm.train import load_run
    try:
        if not (Path(run_dir) / "config.toml").exists():
            raise FileNotFoundError(f"{run_dir} is not a run directory (no config.toml)")
        ckpt = Path(run_dir) / "checkpoints" / f"{checkpoint}.npz"
        used = checkpoint if ckpt.exists() else "last"
        if used != checkpoint:
            click.echo(f"note: {run_dir} kept no best checkpoint (no test or validation evaluation selected one); "
                       f"exporting the last", err=True)
        _, net = load_run(run_dir, checkpoint=checkpoint)
        path = pnir.write_nir(net, out, neuron=neuron, overwrite=overwrite)
    except FileExistsError:  # write_nir's refusal, in the command's words
        raise click.ClickException(f"--out {out} exists and is kept; give --overwrite to replace it")
    except (ValueError, TypeError, FileNotFoundError, RuntimeError, OSError) as e:
        raise click.ClickException(str(e))
    n_nodes = len(pnir.read_nir(path).nodes)
    click.echo(f"wrote {path}: network {net.spec}, checkpoint {used}, neuron {neuron}, {n_nodes} NIR nodes, "
               f"Ts {net.sim.ts:g} ms (times in the file are in seconds)")


def nir_eval_options(f):
    """The options ``pysrm eval`` takes for ``--nir`` (added to that command)."""
    f = click.option("--if-tau-sr", "if_tau_sr", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="with --nir: import IF neurons as SRM neurons of this tau_sr (ms; an approximation)")(f)
    f = click.option("--test-list", "test_list", default=None,
                     help="with --nir: N-MNIST list layout, the test list file (e.g. test100.txt)")(f)
    f = click.option("--dataset", "dataset", default=None,
                     help="with --nir and no RUN_DIR: the dataset to evaluate on (as pysrm train --dataset)")(f)
    f = click.option("--nir", "nir_file", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="evaluate the network of this NIR file instead of RUN_DIR's (RUN_DIR, if given, "
                          "names the dataset)")(f)
    return f


def eval_nir(run_dir, data_dir, t_max, device, as_json, nir_file=None, dataset=None, test_list=None,
             if_tau_sr=None):
    """``pysrm eval --nir FILE``: import FILE and evaluate it on a dataset's test split; prints as pysrm eval."""
    from pysrm.backend import resolve_device
    from pysrm.config import TrainConfig, normalize_dataset
    from pysrm.params import SimParams
    from pysrm.train import check_empty_samples, evaluate, load_data

    if nir_file is None:
        raise click.UsageError("give RUN_DIR, or --nir FILE.nir with a dataset (RUN_DIR or --dataset)")
    if run_dir is None and dataset is None:
        raise click.UsageError("--nir needs a dataset: give RUN_DIR (its dataset) or --dataset NAME")
    pnir = _nir_module()
    try:
        if run_dir is not None:
            if not (Path(run_dir) / "config.toml").exists():
                raise FileNotFoundError(f"{run_dir} is not a run directory (no config.toml)")
            cfg = TrainConfig.from_toml(Path(run_dir) / "config.toml")
        else:
            cfg = TrainConfig().updated({"dataset": normalize_dataset(dataset)}, source="command line")
        upd = {k: v for k, v in (("data_dir", data_dir), ("test_list", test_list), ("dataset", dataset)) if v}
        if "dataset" in upd:
            upd["dataset"] = normalize_dataset(upd["dataset"])
        cfg = cfg.updated(upd, source="command line") if upd else cfg
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pnir.NIRApproximationWarning)
            probe = pnir.from_nir(nir_file, if_tau_sr=if_tau_sr)
        for w in caught:
            click.echo(f"warning: {w.message}", err=True)
        t_sample = t_max or (cfg.test_t_sample if run_dir is not None and cfg.test_t_sample else None)
        t_sample = t_sample or probe.sim.t_sample
        sim = SimParams(ts=probe.sim.ts, t_sample=t_sample)
        net = probe if t_sample == probe.sim.t_sample else pnir.from_nir(nir_file, t_sample=t_sample,
                                                                          if_tau_sr=if_tau_sr)
        cfg = cfg.updated({"ts": sim.ts, "t_sample": sim.t_sample, "test_t_sample": sim.t_sample},
                          source="the NIR file")
        dev = resolve_device(device)
        _, _, test = load_data(cfg, test_sim=sim)
        shape = tuple(test.sample(0).shape[1:4])
        if shape != net.input_shape:
            raise ValueError(f"{nir_file}: the graph's input is {net.input_shape} (C, H, W) but dataset {cfg.dataset} "
                             f"gives {shape}")
        test = check_empty_samples(test, "test", cfg.empty_samples, lambda m: click.echo(m, err=True))
        res = evaluate(net.to(dev), test, cfg, None)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError, OSError) as e:
        raise click.ClickException(str(e))
    d = res.to_dict()
    from .main import _print_curve, _print_summary, json_text
    if as_json:
        click.echo(json_text(d))
        return
    _print_summary({"run_dir": nir_file, "seed": None, "test": d}, saved=False, title=f"NIR graph {nir_file}")
    _print_curve(res)
