"""Event-driven versus dense paths: time per call at several input densities (sets the thresholds in
pysrm/ops/dense.py).  Run: NUMBA_NUM_THREADS=1 python benchmarks/event_vs_dense.py"""
import time

import numpy as np

import pysrm  # noqa: F401
from pysrm import SpikeEvents
from pysrm.ops import dense as D, conv as C
rng=np.random.default_rng(0)
def tm(f, n=3):
    f(); t=time.perf_counter()
    for _ in range(n): f()
    return (time.perf_counter()-t)/n*1e3
print("density  dense-fwd ev/blas  dense-wgrad ev/blas   conv-fwd ev/dense  conv-wgrad ev/dense")
w=rng.normal(size=(512,512)).astype(np.float32); wc=rng.normal(size=(32,16,3,3)).astype(np.float32)
for d in (0.01,0.02,0.05,0.1,0.2,0.3):
    x=(rng.random((16,512,1,1,300))<d).astype(np.float32); ev=SpikeEvents.from_dense(x)
    g=rng.normal(size=(16,512,1,1,300)).astype(np.float32)
    xc=(rng.random((4,16,17,17,300))<d).astype(np.float32); evc=SpikeEvents.from_dense(xc)
    gc=rng.normal(size=(4,32,17,17,300)).astype(np.float32)
    r=[tm(lambda: D.dense(w,ev)), tm(lambda: D.dense(w,x,strategy="blas")),
       tm(lambda: D.dense_backward(w,ev,g,False)), tm(lambda: D.dense_backward(w,x,g,False,strategy="blas")),
       tm(lambda: C.conv(wc,evc,1,1)), tm(lambda: C.conv(wc,xc,1,1,strategy="blas")),
       tm(lambda: C.conv_backward(wc,evc,gc,1,1,False)), tm(lambda: C.conv_backward(wc,xc,gc,1,1,False,strategy="blas"))]
    print(f"{d:5.2f}   " + "   ".join(f"{r[i]:6.1f}/{r[i+1]:6.1f}" for i in range(0,8,2)))
