"""The loader alone: five epochs of the dense N-MNIST config's training batches (no compute); prints the
seconds of each (epoch 1 parses and bins every file).  Run from a checkout's root, with that checkout
first on the path, e.g. ``PYTHONPATH=. python benchmarks/loader_only.py ../shared/data/NMNISTsmall``
(benchmarks/RESULTS.md, "The whole training loop")."""
import sys, time, json
from pysrm.config import TrainConfig
from pysrm.train import load_data, make_loader, sim_params
cfg = TrainConfig.from_toml("examples/configs/nmnist_dense.toml").updated({"data_dir": sys.argv[1]})
tr, _, _ = load_data(cfg, sim_params(cfg))
ld = make_loader(tr, cfg, shuffle=True, augment=True)
out = []
for e in range(5):
    ld.set_epoch(e); t0 = time.perf_counter()
    for x, y in ld: pass
    out.append(time.perf_counter() - t0)
print(json.dumps(out))
