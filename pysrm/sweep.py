"""Sweeps of training runs on Dask (``pysrm sweep``): losses x seeds (x configs), one Dask task per run.

Every run is one call of :func:`run_task` on a Dask worker, which calls the same
:func:`pysrm.train.train` as ``pysrm train``.  The client (:func:`run_sweep`)
plans the runs, skips the ones already complete in the sweep directory, submits
the rest, retries runs whose worker died, collects the results and finally
aggregates all runs with :func:`pysrm.report.make_report`::

    SWEEP_DIR/.pysrm-sweep              the sweep's id (also tells workers whether they share SWEEP_DIR)
    SWEEP_DIR/sweep.json                plan and status of every run (updated after every finished run)
    SWEEP_DIR/runs/<loss>/seed_<s>/     one run directory each, as written by ``pysrm train``
                                        (config.toml, metrics.jsonl, checkpoints/last.npz + best.npz,
                                        report.json; error.txt for a failed run)
    SWEEP_DIR/report/                   table.md, table.csv, figures (``pysrm report`` over the runs)

With several configs the run names are ``<config name>/<loss>/seed_<s>``.

Storage.  Workers need not share a filesystem with the client.  A worker that
sees SWEEP_DIR at the same path (it finds ``.pysrm-sweep`` with the sweep's
id) trains straight into ``SWEEP_DIR/runs/...``; any other worker trains in a
scratch folder (``scratch``, default the worker's temporary folder) and returns
the run directory's files with its result; the client writes them under
SWEEP_DIR.

Reliability.  A run whose worker dies (process killed, node lost) is submitted
again, at most ``retries`` times.  The new attempt resumes from the run's last
checkpoint (written after every epoch) when it can see it -- always with a
shared SWEEP_DIR or a shared ``scratch``, and on the same machine with the
default scratch -- otherwise it starts the run again.  Training is deterministic,
so either way the final results equal those of the same run done serially.  A
run that raises (bad config, diverged loss) is not retried: it is reported with
its error (``error.txt`` in its run directory) and the other runs go on.
Running the same sweep again skips the runs that are complete (report.json and
the same config) and resumes the interrupted ones.

Dask is optional (``pip install ".[dist]"`` in a clone of pysrm); it is imported only here, inside the functions.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
import traceback as _tb
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

from .config import TrainConfig
from .rundir import DirLock, ensure_not_in_use

INSTALL_HINT = ("pysrm sweep needs Dask: pip install \".[dist]\" in a clone of pysrm (or just pip install "
                "\"dask[distributed]\")")
ID_FILE = ".pysrm-sweep"
RUNS = "runs"
RUN_FILES = ("config.toml", "metrics.jsonl", "report.json", "checkpoints/last.npz", "checkpoints/best.npz")
# config keys that do not change a run's results (compared when deciding whether a run is complete)
_IGNORED_KEYS = ("out", "trials", "test_every")
# errors that mean "the worker or the connection was lost", not "the run failed": these are retried
_LOST_WORKER_ERRORS = ("KilledWorker", "CommClosedError", "FutureCancelledError", "CancelledError")


class DaskMissing(ImportError):
    def __init__(self):
        super().__init__(INSTALL_HINT)


class SweepError(ValueError):
    """The sweep cannot start (conflicting runs in SWEEP_DIR, duplicate names, no workers...)."""


def require_dask():
    """Import ``dask.distributed`` or raise :class:`DaskMissing` with the install command."""
    try:
        import dask  # noqa: F401
        import distributed
    except ImportError:
        raise DaskMissing() from None
    return distributed


# ------------------------------------------------------------------------------------------------ plan
@dataclass
class SweepRun:
    """One training run of a sweep: its name (relative run directory) and config."""

    name: str
    cfg: TrainConfig


def plan_sweep(configs, losses=None, trials: int | None = None) -> list:
    """The runs of a sweep: every config x every loss x ``trials`` seeds ``seed .. seed+trials-1``.

    ``configs``: one :class:`TrainConfig`, or a list of ``(name, TrainConfig)`` (name ``None`` or a single
    config: runs are called ``<loss>/seed_<s>``; otherwise ``<name>/<loss>/seed_<s>``).  ``losses``
    defaults to each config's loss, ``trials`` to each config's ``trials``.
    """
    if isinstance(configs, TrainConfig):
        configs = [(None, configs)]
    configs = list(configs)
    names = [n for n, _ in configs]
    if len(configs) > 1 and (None in names or len(set(names)) != len(names)):
        raise SweepError(f"several configs need distinct names; got {names}")
    runs = []
    for name, cfg in configs:
        k = trials if trials is not None else cfg.trials
        if not isinstance(k, int) or k < 1:
            raise SweepError(f"trials must be an integer >= 1; got {k!r}")
        for loss in (losses or [cfg.loss]):
            for i in range(k):
                c = cfg.updated({"loss": loss, "seed": cfg.seed + i, "trials": 1, "out": None})
                rel = f"{loss}/seed_{c.seed}"
                runs.append(SweepRun(rel if len(configs) == 1 else f"{name}/{rel}", c))
    seen = set()
    for r in runs:
        if r.name in seen:
            raise SweepError(f"run {r.name} appears twice in the sweep (repeated loss?)")
        seen.add(r.name)
    return runs


def _comparable(d: dict) -> dict:
    d = dict(d)
    d.pop("versions", None)
    for k in _IGNORED_KEYS:
        d.pop(k, None)
    return d


def config_differences(path, cfg: TrainConfig) -> list:
    """Keys on which the run directory's config.toml differs from ``cfg`` (``[]``: same run)."""
    try:
        saved = _comparable(TrainConfig.from_toml(path).to_dict())
    except (ValueError, FileNotFoundError) as e:
        return [f"unreadable config ({e})"]
    want = _comparable(cfg.to_dict())
    return [f"{k}: {saved.get(k)!r} != {want.get(k)!r}" for k in want if saved.get(k) != want.get(k)]


def is_complete(run_dir, cfg: TrainConfig) -> bool:
    run_dir = Path(run_dir)
    return (run_dir / "report.json").exists() and not config_differences(run_dir / "config.toml", cfg)


# ------------------------------------------------------------------------------------------ worker side
def workers_info(client) -> dict:
    """``{address: info}`` of all the cluster's workers (``info['nthreads']``, ...)."""
    try:
        return client.scheduler_info(n_workers=-1)["workers"]
    except TypeError:  # distributed < 2025: no n_workers, always all workers
        return client.scheduler_info()["workers"]


def _auto_threads() -> int:
    """Numba threads for a run on this worker: the host's cores / all Dask threads on this host."""
    from dask.system import CPU_COUNT
    try:
        from distributed import get_client, get_worker
        from distributed.comm import get_address_host
        w = get_worker()
        own = getattr(w, "state", w).nthreads  # WorkerState since distributed 2022.9
        try:
            host = get_address_host(w.address)
            info = workers_info(get_client())
            total = sum(v.get("nthreads", 1) for a, v in info.items() if get_address_host(a) == host)
        except Exception:  # pragma: no cover - scheduler unreachable: count only this worker
            total = own
        return max(1, CPU_COUNT // max(total, own, 1))
    except Exception:  # not inside a Dask worker
        return CPU_COUNT


def set_numba_threads(threads: int | None) -> int:
    """Use ``threads`` Numba threads in this thread (``None``: share the host's cores); returns the number."""
    import numba
    # A Dask worker can import numba before the nanny applies the worker's environment
    # (NUMBA_NUM_THREADS from local_cluster): numba's config then disagrees with os.environ, and the
    # first compilation in the worker (config.reload_config) raised "Cannot set NUMBA_NUM_THREADS to a
    # different value once the threads have been launched" -- every run failed on a cold kernel
    # cache.  Re-read the environment before the thread pool starts.
    try:
        numba.config.reload_config()
    except RuntimeError:  # the pool already runs with another size: keep it, cap below
        pass
    n = _auto_threads() if threads is None else int(threads)
    n = max(1, min(n, numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    return n


def _sees_sweep_dir(sweep_dir, sweep_id) -> bool:
    try:
        return (Path(sweep_dir) / ID_FILE).read_text().strip() == sweep_id
    except OSError:
        return False


def _checkpoint_position(run_dir: Path, cfg: TrainConfig):
    """``(epoch, batch)`` of ``run_dir/checkpoints/last.npz`` when it belongs to ``cfg``, else None."""
    ck = run_dir / "checkpoints" / "last.npz"
    if not ck.exists() or config_differences(run_dir / "config.toml", cfg):
        return None
    try:
        import numpy as np
        with np.load(ck, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
        return int(meta["epoch"]), int(meta["batch"])
    except Exception:  # unreadable checkpoint: start again
        return None


def run_task(name: str, cfg_dict: dict, sweep_dir: str, sweep_id: str, shared: bool | None = None,
             scratch: str | None = None, threads: int | None = None, progress=None) -> dict:
    """Train one run of a sweep on a Dask worker (or anywhere); returns a picklable result.

    The run trains in ``sweep_dir/runs/<name>`` when this machine sees the sweep directory (``shared``:
    None detects it, True requires it, False never uses it), otherwise in
    ``<scratch or temp dir>/pysrm-sweep/<sweep_id>/<name>``, whose files are then returned (and the
    scratch copy removed).  A checkpoint of an earlier attempt found there is resumed.  Exceptions of
    the training (bad config, diverged loss) propagate unchanged.
    """
    import socket

    from .train import RunFinished, train
    t0 = time.time()
    cfg = TrainConfig.from_dict(cfg_dict, source=f"sweep run {name}")
    from ._malloc import tune_malloc
    tune_malloc()  # a worker process trains: keep freed temporaries for reuse (pysrm/_malloc.py)
    n_threads = set_numba_threads(threads)
    sees = _sees_sweep_dir(sweep_dir, sweep_id)
    if shared and not sees:
        raise RuntimeError(f"the sweep directory {sweep_dir} is not shared with worker {socket.gethostname()} "
                           "(drop --shared-fs, or mount it at the same path)")
    in_place = sees if shared is None else bool(shared)
    root = Path(sweep_dir) / RUNS if in_place else Path(scratch or tempfile.gettempdir()) / "pysrm-sweep" / sweep_id
    run_dir = root / name
    position = _checkpoint_position(run_dir, cfg)
    if position is not None:
        try:
            report = train(TrainConfig(), run_dir=run_dir, resume=True, progress=progress)
        except RunFinished as done:  # trained and reported by an attempt whose result never arrived
            report = done.report
    else:
        if run_dir.exists():
            # a stale or foreign partial run -- unless another process is writing it right now
            ensure_not_in_use(run_dir, hint="a sweep run is trained by one process at a time")
            shutil.rmtree(run_dir)
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        report = train(cfg, run_dir=run_dir, progress=progress)
    files = None
    if not in_place:
        files = {rel: (run_dir / rel).read_bytes() for rel in RUN_FILES if (run_dir / rel).exists()}
        shutil.rmtree(run_dir, ignore_errors=True)
    try:
        from distributed import get_worker
        worker = get_worker().address
    except Exception:
        worker = None
    return {"name": name, "report": report, "files": files, "in_place": in_place, "resumed_from": position,
            "seconds": time.time() - t0, "threads": n_threads, "host": socket.gethostname(), "worker": worker}


# ------------------------------------------------------------------------------------------ client side
@dataclass
class RunOutcome:
    name: str
    status: str                   # "done", "skipped" (complete before), "failed", "pending" (not finished)
    run_dir: str
    attempts: int = 0
    seconds: float | None = None
    error: str | None = None
    resumed_from: list | None = None
    worker: str | None = None
    threads: int | None = None
    final_accuracy: float | None = None


@dataclass
class SweepResult:
    out_dir: Path
    runs: list
    report: dict | None = None
    report_error: str | None = None
    cluster: str = ""
    interrupted: bool = False

    def _with(self, status):
        return [r for r in self.runs if r.status == status]

    @property
    def done(self):
        return self._with("done")

    @property
    def skipped(self):
        return self._with("skipped")

    @property
    def failed(self):
        return self._with("failed")

    @property
    def n_failed(self) -> int:
        return len(self.failed)


# preload of the local workers: Ctrl-C in the terminal reaches the whole process group; the client
# handles it (closes the cluster) and the workers, its children, need not print tracebacks about it
_IGNORE_SIGINT = """
import signal

def dask_setup(worker):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
"""


def local_cluster(workers: int, threads: int, dashboard_address=":8787", silence_logs=None, **kwargs):
    """A ``LocalCluster`` of ``workers`` processes running one run each with ``threads`` Numba threads.

    Worker deaths are not retried by the scheduler itself (``allowed_failures=0``): :func:`run_sweep`
    resubmits, counts and reports the attempts.  No memory limit: the runs are not Dask-managed data,
    and a nanny killing a worker that holds a large dataset would only make it start again.
    """
    import logging

    from distributed import LocalCluster
    env = {"NUMBA_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "OMP_NUM_THREADS": "1"}
    opts = dict(n_workers=workers, threads_per_worker=1, processes=True, memory_limit=0, env=env,
                dashboard_address=dashboard_address, silence_logs=silence_logs or logging.CRITICAL,
                scheduler_kwargs={"allowed_failures": 0}, preload=[_IGNORE_SIGINT])
    opts.update(kwargs)
    with warnings.catch_warnings():  # "Port 8787 is already in use ... on port N instead": we print the address
        warnings.filterwarnings("ignore", message=r"Port \d+ is already in use")
        return LocalCluster(**opts)


def local_sizing(n_runs: int, workers: int | None = None, threads: int | None = None, cores: int | None = None):
    """``(workers, numba threads per worker)`` with workers x threads <= cores (when the user leaves room)."""
    if cores is None:
        from dask.system import CPU_COUNT as cores
    n_runs = max(1, n_runs)
    if workers is None and threads is None:
        workers = max(1, min(cores, n_runs))
    if workers is None:
        workers = max(1, min(cores // threads, n_runs))
    if threads is None:
        threads = max(1, cores // workers)
    return workers, threads


def _has_bokeh() -> bool:
    import importlib.util
    return importlib.util.find_spec("bokeh") is not None


def dashboard_address(client) -> str | None:
    """The dashboard URL, or None when the scheduler cannot serve it (bokeh not installed there)."""
    try:
        if "dashboard" not in client.scheduler_info().get("services", {}):
            return None
        if not client.run_on_scheduler(_has_bokeh):
            return None
    except Exception:  # pragma: no cover - an old or locked-down scheduler: assume it is there
        pass
    return client.dashboard_link


def _sweep_id(out: Path) -> str:
    p = out / ID_FILE
    if p.exists():
        return p.read_text().strip()
    sid = uuid.uuid4().hex
    p.write_text(sid + "\n")
    return sid


def _write_json(path: Path, data):
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _install_run(dest: Path, files: dict):
    """Write the returned files as the run directory ``dest`` (atomically: a side folder, then rename)."""
    tmp = dest.with_name(dest.name + ".incoming")
    shutil.rmtree(tmp, ignore_errors=True)
    for rel, data in files.items():
        p = tmp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)


def _fix_report_path(run_dir: Path):
    """The report's ``run_dir`` names the folder the run trained in; point it at its place in the sweep."""
    p = run_dir / "report.json"
    rep = json.loads(p.read_text())
    if rep.get("run_dir") != str(run_dir):
        rep["run_dir"] = str(run_dir)
        _write_json(p, rep)
    return rep


def plural(n: int, word: str) -> str:
    """``plural(2, 'loss')`` -> '2 losses'."""
    return f"{n} {word}" + ("" if n == 1 else "es" if word.endswith("s") else "s")


def _error_name(exc) -> str:
    return type(exc).__name__


def run_sweep(runs, out_dir, *, scheduler: str | None = None, client=None, workers: int | None = None,
              threads_per_run: int | None = None, retries: int = 3, shared: bool | None = None,
              scratch: str | None = None, dashboard: str = ":8787", report: bool = True, log=print,
              task_progress=None, connect_timeout: float = 60.0) -> SweepResult:
    """Run the sweep ``runs`` (from :func:`plan_sweep`) into ``out_dir``; see the module docstring.

    Cluster: ``client`` (an existing ``distributed.Client``, left open), else ``scheduler`` (address
    ``tcp://host:8786`` or a scheduler JSON file; ``workers``: wait for that many workers), else a
    :func:`local_cluster` sized by :func:`local_sizing`.  ``threads_per_run``: Numba threads per run (default:
    the local sizing, or on a remote cluster the worker host's cores / its Dask threads).  ``retries``: how
    often a run whose worker died is submitted again.  ``log``: called with each progress line.
    ``task_progress``: a progress object passed to every :func:`pysrm.train.train` call (tests).

    SWEEP_DIR is owned by this call (:class:`pysrm.rundir.DirLock`): a second sweep into it at the same
    time is refused with :class:`pysrm.rundir.DirectoryInUse` naming the first (each run directory is
    locked by the process that trains it, too).
    """
    require_dask()
    out = Path(out_dir).resolve()
    with DirLock(out, what="sweep directory", hint="wait until that sweep ends (running the same command again "
                                                   "then skips its complete runs), or choose another --out"):
        return _run_sweep_owned(runs, out, scheduler=scheduler, client=client, workers=workers,
                                threads_per_run=threads_per_run, retries=retries, shared=shared, scratch=scratch,
                                dashboard=dashboard, report=report, log=log, task_progress=task_progress,
                                connect_timeout=connect_timeout)


def _run_sweep_owned(runs, out_dir, *, scheduler, client, workers, threads_per_run, retries, shared, scratch,
                     dashboard, report, log, task_progress, connect_timeout) -> SweepResult:
    """:func:`run_sweep` once SWEEP_DIR is locked."""
    distributed = require_dask()
    if retries < 0:
        raise SweepError(f"retries must be >= 0; got {retries}")
    runs = list(runs)
    if len({r.name for r in runs}) != len(runs):
        raise SweepError("run names in a sweep must be distinct")
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    runs_root = out / RUNS
    sid = _sweep_id(out)
    outcomes = {r.name: RunOutcome(r.name, "pending", str(runs_root / r.name)) for r in runs}
    result = SweepResult(out, list(outcomes.values()))

    conflicts = []
    for r in runs:
        d = runs_root / r.name
        if (d / "report.json").exists():
            diff = config_differences(d / "config.toml", r.cfg)
            if diff:
                conflicts.append(f"{d}: " + "; ".join(diff[:4]))
            else:
                outcomes[r.name].status = "skipped"
                outcomes[r.name].final_accuracy = json.loads((d / "report.json").read_text()).get("final_accuracy")
    if conflicts:
        raise SweepError("SWEEP_DIR already holds finished runs with a different config (use another --out, or "
                         "delete them):\n  " + "\n  ".join(conflicts))
    n_skip = sum(o.status == "skipped" for o in outcomes.values())

    def save_manifest():
        _write_json(out / "sweep.json", {
            "id": sid, "updated": time.strftime("%Y-%m-%d %H:%M:%S"), "cluster": result.cluster,
            "runs": {r.name: {**{k: v for k, v in vars(outcomes[r.name]).items() if k != "name"},
                              "config": r.cfg.to_dict()} for r in runs}})

    def fail(name, message, tb=None):
        o = outcomes[name]
        o.status, o.error = "failed", message
        d = runs_root / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "error.txt").write_text(message + "\n" + (tb or ""))

    todo = []
    for r in runs:
        if outcomes[r.name].status != "pending":
            continue
        try:
            r.cfg.validate()
            todo.append(r)
        except ValueError as e:
            fail(r.name, f"ValueError: {e}")
    log(f"{plural(len(runs), 'run')} -> {out}" + (f" ({n_skip} already complete, skipped)" if n_skip else ""))
    for o in outcomes.values():
        if o.status == "failed":
            log(f"  {o.name} FAILED: {o.error}")

    cluster = own_client = None
    try:
        if todo:
            if client is None:
                if scheduler:
                    if Path(scheduler).is_file():
                        client = distributed.Client(scheduler_file=scheduler, timeout=connect_timeout)
                    else:
                        client = distributed.Client(scheduler, timeout=connect_timeout)
                    own_client = client
                    if workers:
                        log(f"waiting for {workers} workers at {scheduler} ...")
                        client.wait_for_workers(workers)  # worker jobs may sit in a batch queue for long
                else:
                    from dask.system import CPU_COUNT
                    workers, threads_per_run = local_sizing(len(todo), workers, threads_per_run)
                    if workers * threads_per_run > CPU_COUNT:
                        log(f"warning: {workers} workers x {threads_per_run} threads exceed the {CPU_COUNT} cores")
                    cluster = local_cluster(workers, threads_per_run, dashboard_address=dashboard)
                    client = own_client = distributed.Client(cluster)
                    result.cluster = (f"local cluster: {plural(workers, 'worker process')} x "
                                      f"{plural(threads_per_run, 'Numba thread')} ({plural(CPU_COUNT, 'core')})")
            if not result.cluster:
                n = len(workers_info(client))
                result.cluster = f"scheduler {client.scheduler.address} ({plural(n, 'worker')} now)"
            if cluster is not None and not dashboard:
                dash = "off"
            else:
                dash = dashboard_address(client) or "not running (pip install bokeh)"
            log(f"dask: {result.cluster}; dashboard: {dash}")
            save_manifest()
            _run_all(distributed, client, todo, outcomes, runs_root, sid, shared, scratch, threads_per_run, retries,
                     task_progress, log, fail, save_manifest)
    except KeyboardInterrupt:
        result.interrupted = True
        log("interrupted: run the same command again to continue (complete runs are skipped, interrupted "
            "runs resume from their last checkpoint where the workers can see it)")
    finally:
        save_manifest()
        if own_client is not None:
            own_client.close()
        if cluster is not None:
            cluster.close()

    finished = [runs_root / o.name for o in outcomes.values() if o.status in ("done", "skipped")]
    if report and finished and not result.interrupted:
        from .report import make_report
        try:
            result.report = make_report(finished, out / "report")
        except Exception as e:  # the runs themselves are safe; say why the table is missing
            result.report_error = f"{type(e).__name__}: {e}"
    return result


def _cluster_threads(client) -> int:
    try:
        return sum(w.get("nthreads", 1) for w in workers_info(client).values())
    except Exception:  # pragma: no cover
        return 1


def _run_all(distributed, client, todo, outcomes, runs_root, sid, shared, scratch, threads, retries, task_progress,
             log, fail, save_manifest, poll: float = 5.0):
    """Keep at most one run per free worker thread in flight; handle results, failures and lost workers.

    Runs are handed out one by one as threads become free (not all at once): a run never waits on a
    worker that is busy -- where a dead worker would take it down too -- and workers that join later
    (dask-jobqueue, adaptive clusters) get runs as soon as they are seen.
    """
    queue = list(todo)
    inflight = {}     # future -> run
    total = len(todo)
    finished = 0

    def submit(r):
        o = outcomes[r.name]
        o.attempts += 1
        key = f"pysrm-train-{r.name.replace('/', '.')}-{sid[:8]}-a{o.attempts}-{uuid.uuid4().hex[:6]}"
        fut = client.submit(run_task, r.name, r.cfg.to_dict(), str(runs_root.parent), sid, shared=shared,
                            scratch=scratch, threads=threads, progress=task_progress, key=key, pure=False)
        inflight[fut] = r

    while queue or inflight:
        capacity = max(1, _cluster_threads(client))
        while queue and len(inflight) < capacity:
            submit(queue.pop(0))
        try:
            done, _ = distributed.wait(list(inflight), timeout=poll, return_when="FIRST_COMPLETED")
        except TimeoutError:  # nothing finished: look again for new workers
            continue
        for fut in done:
            r = inflight.pop(fut)
            name, o = r.name, outcomes[r.name]
            res = exc = None
            if fut.status == "finished":
                try:
                    res = fut.result()
                except Exception as e:  # pragma: no cover - lost between completion and transfer
                    exc = e
            else:
                try:
                    exc = fut.exception()
                except (Exception, asyncio.CancelledError) as e:  # a cancelled future raises instead
                    exc = e
            tb = fut.traceback() if exc is not None and fut.status == "error" else None
            fut.release()
            if res is not None:
                d = runs_root / name
                try:
                    if res["files"] is not None:
                        _install_run(d, res["files"])
                    rep = _fix_report_path(d)
                    (d / "error.txt").unlink(missing_ok=True)
                except Exception as e:
                    finished += 1
                    fail(name, f"{type(e).__name__} while saving the run: {e}")
                    log(f"[{finished}/{total}] {name} FAILED: {o.error}")
                    save_manifest()
                    continue
                finished += 1
                o.status, o.error, o.seconds, o.worker = "done", None, res["seconds"], res["worker"] or res["host"]
                o.threads = res["threads"]
                o.resumed_from = list(res["resumed_from"]) if res["resumed_from"] else None
                o.final_accuracy = rep.get("final_accuracy")
                extra = f", resumed at epoch {res['resumed_from'][0] + 1}" if res["resumed_from"] else ""
                extra += f", attempt {o.attempts}" if o.attempts > 1 else ""
                log(f"[{finished}/{total}] {name} done: test accuracy {100 * o.final_accuracy:.2f} %, "
                    f"{res['seconds']:.1f} s on {o.worker} ({res['threads']} thread"
                    f"{'s' if res['threads'] > 1 else ''}{extra})")
            elif _error_name(exc) in _LOST_WORKER_ERRORS and o.attempts <= retries:
                log(f"  worker lost while running {name} ({_error_name(exc)}); retrying "
                    f"(attempt {o.attempts + 1} of {retries + 1})")
                queue.insert(0, r)
                continue
            else:
                finished += 1
                lost = _error_name(exc) in _LOST_WORKER_ERRORS
                msg = f"{_error_name(exc)}: {exc}"
                if lost:
                    msg = f"worker lost {o.attempts} times ({msg})"
                text = None if lost else "".join(_tb.format_exception(type(exc), exc, tb))
                fail(name, msg, text)
                log(f"[{finished}/{total}] {name} FAILED: {msg}")
            save_manifest()
