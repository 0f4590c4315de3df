#!/usr/bin/env python
"""Serving speed: one query over a 100k-image index on 2 CPU cores.

Prints:

* text encoding time of one query, ONNX Runtime against PyTorch;
* end-to-end HTTP latency (p50/p95) of ``POST /search`` on a
  ``tools/serve.py`` process (tokenise, encode, rank 100k, JSON);
* the throughput with 8 concurrent clients.

The model is the demo config's architecture (``configs/mdrl_demo.py``; the
weights do not change the timings, so a random initialisation is exported
unless ``--checkpoint`` is given). The index has ``--num-images`` random unit
features whose rows all point to one small image file. Everything runs on
the first ``--cores`` CPU cores (process affinity). Target: p50 < 50 ms.

Usage::

    python benchmarks/bench_serve.py [--config configs/mdrl_demo.py]
        [--checkpoint CKPT] [--num-images 100000] [--cores 2]
"""
import argparse
import os
import os.path as osp
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
QUERY = 'a woman in a red coat with a black backpack and white shoes'


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def timed(fn, repeat):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=osp.join(REPO, 'configs',
                                                     'mdrl_demo.py'))
    parser.add_argument('--checkpoint', help='default: random weights')
    parser.add_argument('--num-images', type=int, default=100_000)
    parser.add_argument('--cores', type=int, default=2)
    parser.add_argument('--requests', type=int, default=200)
    parser.add_argument('--clients', type=int, default=8)
    args = parser.parse_args()

    cores = sorted(os.sched_getaffinity(0))[:args.cores]
    os.sched_setaffinity(0, cores)
    os.environ['OMP_NUM_THREADS'] = str(len(cores))
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    import httpx
    import numpy as np
    import torch
    from mmengine import Config

    import mdrl_plugin  # noqa: F401
    from mdrl_deploy import GalleryIndex, OrtSearcher
    from mdrl_plugin.apis import PersonSearcher
    from mdrl_plugin.deploy import export_onnx
    from mdrl_plugin.registry import MODELS
    torch.set_num_threads(len(cores))
    work = tempfile.mkdtemp(prefix='bench_serve_')
    cfg = Config.fromfile(args.config)
    ckpt = args.checkpoint
    if ckpt is None:
        torch.manual_seed(0)
        model_cfg = cfg.model.copy()
        ckpt = osp.join(work, 'random.pth')
        torch.save({'meta': {}, 'state_dict':
                    MODELS.build(model_cfg).state_dict()}, ckpt)
    export = osp.join(work, 'export')
    export_onnx(cfg, ckpt, export)
    torch_s = PersonSearcher(cfg, ckpt, progress=False)
    ort_s = OrtSearcher(export, num_threads=len(cores))

    t_torch = timed(lambda: torch_s.encode_texts(QUERY), 50)
    t_onnx = timed(lambda: ort_s.encode_texts(QUERY), 50)

    # a synthetic index: random unit features, every row the same image file
    import cv2
    img = osp.join(work, 'gallery', 'person.png')
    os.makedirs(osp.dirname(img))
    cv2.imwrite(img, np.zeros((192, 64, 3), np.uint8))
    st = os.stat(img)
    n = args.num_images
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((n, ort_s.feature_dim), dtype=np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    index = GalleryIndex(paths=[img] * n, features=feats,
                         fingerprint=dict(ort_s.fingerprint),
                         sizes=[st.st_size] * n, mtimes_ns=[st.st_mtime_ns] * n,
                         root=osp.dirname(img))
    index_path = index.save(osp.join(work, 'index.npz'))
    ort_s.index = index
    t_rank = timed(lambda: ort_s.search_features(
        ort_s.encode_texts(QUERY), 10), 20)

    port = 18000 + os.getpid() % 1000
    server = subprocess.Popen(
        ['taskset', '-c', ','.join(map(str, cores)), sys.executable,
         osp.join(REPO, 'tools', 'serve.py'), '--index', index_path,
         '--model', export, '--port', str(port), '--threads',
         str(len(cores))],
        env=dict(os.environ, PYTHONPATH=REPO), stderr=subprocess.DEVNULL)
    url = f'http://127.0.0.1:{port}'
    try:
        for _ in range(600):
            try:
                if httpx.get(url + '/health', timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        body = dict(query=QUERY, topk=10)
        with httpx.Client(base_url=url, timeout=60) as client:
            lat = timed(lambda: client.post('/search', json=body)
                        .raise_for_status(), args.requests)

        def one_client(_):
            with httpx.Client(base_url=url, timeout=60) as c:
                for _ in range(args.requests // args.clients):
                    c.post('/search', json=body).raise_for_status()

        start = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(one_client, range(args.clients)))
        elapsed = time.perf_counter() - start
        done = args.requests // args.clients * args.clients
    finally:
        server.terminate()
        server.wait()

    print(f'cores: {cores}  index: {n} images x {ort_s.feature_dim}  '
          f'load average: {os.getloadavg()[0]:.1f}')
    print(f'text encoding, one query:  PyTorch median '
          f'{statistics.median(t_torch):.1f} ms  |  ONNX Runtime median '
          f'{statistics.median(t_onnx):.1f} ms')
    print(f'encode + rank {n} in-process (ONNX): median '
          f'{statistics.median(t_rank):.1f} ms')
    print(f'HTTP POST /search end to end ({args.requests} sequential): '
          f'p50 {percentile(lat, 50):.1f} ms  p95 {percentile(lat, 95):.1f} '
          f'ms  (target p50 < 50 ms)')
    print(f'{args.clients} concurrent clients: {done} requests in '
          f'{elapsed:.1f} s = {done / elapsed:.1f} requests/s')


if __name__ == '__main__':
    main()
