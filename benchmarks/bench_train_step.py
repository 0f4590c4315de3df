"""Time one training step (forward, backward, optimizer) of full MDRL against
the global-only model (no DLL, no CIM), at a tiny size and at the paper's
size, and report the step's peak memory; with ``--with-cp``, each model also
with activation checkpointing (``with_cp=True`` on the ViT, the LTE, the DLLs
and CIM).

The paper size is ViT-B/16 at 384x128 and BERT-base with text length 64 (the
BERT is built from its config with random weights: only the cost matters).

Every setting runs in a fresh process (this script re-executes itself), so
that one setting's memory never counts in another's. Memory:

* CPU: the peak resident set size (``getrusage(RUSAGE_SELF).ru_maxrss``) of
  the timed steps. After the model, the optimizer state and one warm-up step,
  the kernel's peak is reset to the current RSS (Linux
  ``/proc/self/clear_refs``; where that is refused the peak includes the
  warm-up step, and the output says so). glibc's mmap threshold is fixed at
  64 KiB in the child (``MALLOC_MMAP_THRESHOLD_``), so that freed tensors
  leave the RSS instead of staying in malloc's heap, where the "base" after
  the warm-up step would count them (``--default-malloc`` leaves glibc as it
  is: steps may be a little faster, the activation figure less reliable).
* CUDA: ``torch.cuda.max_memory_allocated`` over the timed steps, after
  ``reset_peak_memory_stats``.

``base`` is the memory after the warm-up step (parameters, gradients,
optimizer state and, on CPU, the process itself); ``act`` = peak - base is
what the step adds: activations and transient buffers. The bytes of the
parameters, the gradients and the optimizer state are printed beside it.

Usage:
    python benchmarks/bench_train_step.py [--batch 8] [--repeat 3]
        [--sizes tiny paper] [--models global full] [--with-cp]
        [--device cpu|cuda] [--amp] [--amp-dtype bf16|fp16] [--default-malloc]
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Optional, Tuple

MiB = 2**20
BERT_BASE = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12,
                 num_attention_heads=12, intermediate_size=3072)
BERT_TINY = dict(vocab_size=30522, hidden_size=128, num_hidden_layers=2,
                 num_attention_heads=2, intermediate_size=256)
MODEL_NAMES = {'global': 'global-only', 'full': 'full MDRL'}


def model_cfg(size: str, full: bool,
              with_cp: bool = False) -> Tuple[dict, tuple]:
    """The benchmarked model config and its image size ``(H, W)``.

    Args:
        size: ``'paper'`` (ViT-B/16 384x128, BERT-base) or ``'tiny'``.
        full: DLL and CIM too (else the global-only model).
        with_cp: Activation checkpointing in every block stack.

    Returns:
        tuple: model config and image size.
    """
    if size == 'paper':
        img_size, vit, bert, heads = (384, 128), {}, BERT_BASE, 12
    else:
        img_size = (128, 64)
        vit = dict(embed_dim=128, depth=2, num_heads=2)
        bert, heads = BERT_TINY, 2
    cfg = dict(
        type='MDRL', num_classes=11003,
        image_encoder=dict(type='TimmVisionTransformer',
                           arch='vit_base_patch16_224', img_size=img_size,
                           arch_kwargs=vit, with_cp=with_cp),
        text_encoder=dict(type='BertTextEncoder', bert_config=bert,
                          num_lte_layers=2, num_heads=heads, with_cp=with_cp))
    if full:
        cfg.update(
            image_local=dict(type='DisorderedLocalLearning', num_groups=4,
                             num_heads=heads, with_cp=with_cp),
            cross_modal=dict(type='CrossModalInteraction', num_layers=2,
                             num_heads=heads, with_cp=with_cp))
    return cfg, img_size


def _rss_bytes() -> int:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def _reset_peak_rss() -> bool:
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # peak RSS := current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def _tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors
               if t is not None and hasattr(t, 'numel'))


def bench(size: str, full: bool, batch: int, repeat: int, device: str,
          amp: bool, amp_dtype: str = 'bf16', with_cp: bool = False) -> dict:
    """Build a model and time ``repeat`` steps after a warm-up step (run it
    in a fresh process for the memory figures to mean anything)."""
    import torch
    from mmengine.structures import BaseDataElement

    import mdrl_plugin  # noqa: F401
    from mdrl_plugin.registry import MODELS

    torch.manual_seed(0)
    cfg, img_size = model_cfg(size, full, with_cp)
    model = MODELS.build(cfg).to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=7e-5, momentum=0.9, weight_decay=0.01)
    images = torch.randn(batch, 3, *img_size, device=device)
    ids = torch.randint(1000, 30000, (batch, 64), device=device)
    ids[:, 0], ids[:, -1] = 101, 102
    inputs = dict(images=images, input_ids=ids,
                  attention_mask=torch.ones_like(ids))
    samples = [BaseDataElement(metainfo=dict(gt_label=i % 11003))
               for i in range(batch)]
    dtype = torch.bfloat16 if amp_dtype == 'bf16' else torch.float16

    def step():
        with torch.autocast(device, dtype=dtype, enabled=amp):
            loss = sum(model(inputs, samples, mode='loss').values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device == 'cuda':
            torch.cuda.synchronize()

    step()  # warm-up: gradients and momentum exist from here on
    out = dict(
        params=sum(p.numel() for p in params),
        param_bytes=_tensor_bytes(model.parameters()),
        grad_bytes=_tensor_bytes(p.grad for p in params),
        optim_bytes=_tensor_bytes(v for s in opt.state.values()
                                  for v in s.values()),
        input_bytes=_tensor_bytes(inputs.values()))
    if device == 'cuda':
        out['base_bytes'] = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        import gc
        gc.collect()
        out['base_bytes'] = _rss_bytes()
        out['peak_reset'] = _reset_peak_rss()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    out['seconds'] = statistics.median(times)
    if device == 'cuda':
        out['peak_bytes'] = torch.cuda.max_memory_allocated()
    else:  # ru_maxrss is in KiB on Linux
        out['peak_bytes'] = (
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    out['threads'] = torch.get_num_threads()
    return out


def run_fresh(size: str, model: str, with_cp: bool, args) -> dict:
    """:func:`bench` in a fresh process; its result."""
    cmd = [sys.executable, os.path.abspath(__file__), '--child',
           json.dumps(dict(size=size, full=model == 'full', batch=args.batch,
                           repeat=args.repeat, device=args.device,
                           amp=args.amp, amp_dtype=args.amp_dtype,
                           with_cp=with_cp))]
    env = dict(os.environ)
    if not args.default_malloc:
        env['MALLOC_MMAP_THRESHOLD_'] = str(64 * 1024)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f'{size} {model} with_cp={with_cp} failed:\n{proc.stderr}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _row(size: str, model: str, with_cp: bool, r: dict, batch: int) -> str:
    mib = {k: r[f'{k}_bytes'] / MiB
           for k in ('param', 'grad', 'optim', 'base', 'peak')}
    name = f'{MODEL_NAMES[model]}{" +cp" if with_cp else ""}'
    return (f'{size:5s} {name:15s} {r["seconds"]:8.3f} s/step '
            f'{batch / r["seconds"]:7.2f} samples/s '
            f'{r["params"] / 1e6:6.1f} M trainable | '
            f'params {mib["param"]:7.0f} MiB  grads {mib["grad"]:6.0f} MiB  '
            f'optim {mib["optim"]:6.0f} MiB  base {mib["base"]:7.0f} MiB  '
            f'peak {mib["peak"]:7.0f} MiB  '
            f'act {mib["peak"] - mib["base"]:7.0f} MiB')


def main(argv: Optional[list] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--sizes', nargs='+', default=['tiny', 'paper'],
                        choices=['tiny', 'paper'])
    parser.add_argument('--models', nargs='+', default=['global', 'full'],
                        choices=['global', 'full'],
                        help='global-only and/or full MDRL')
    parser.add_argument('--with-cp', action='store_true',
                        help='also run each model with with_cp=True')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--amp', action='store_true', help='autocast')
    parser.add_argument('--amp-dtype', choices=['bf16', 'fp16'],
                        default='bf16')
    parser.add_argument('--default-malloc', action='store_true',
                        help="CPU: keep glibc's dynamic mmap threshold")
    parser.add_argument('--child', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:  # one setting, in this fresh process
        print(json.dumps(bench(**json.loads(args.child))))
        return
    if args.device == 'cuda':
        import torch
        name = torch.cuda.get_device_name()
        memory = ('peak = torch.cuda.max_memory_allocated over the timed '
                  'steps; base = torch.cuda.memory_allocated after the '
                  'warm-up step')
    else:
        threads = os.environ.get('OMP_NUM_THREADS', 'torch default')
        name = f'cpu ({os.cpu_count()} cores), OMP_NUM_THREADS={threads}'
        memory = ('peak = ru_maxrss of a fresh process per setting over the '
                  'timed steps (peak reset after the warm-up step via '
                  '/proc/self/clear_refs); base = RSS after the warm-up step; '
                  + ('glibc malloc as configured' if args.default_malloc
                     else 'MALLOC_MMAP_THRESHOLD_=65536'))
    amp = args.amp_dtype if args.amp else 'off (fp32)'
    print(f'device: {name}; batch {args.batch}; amp {amp}; text length 64; '
          f'median of {args.repeat} steps after a warm-up step')
    print(f'memory: {memory}; act = peak - base (activations and transient '
          'buffers); params = all parameters (frozen BERT included), grads '
          'and optim (SGD momentum) = trainable parameters')
    for size in args.sizes:
        results = {}
        for model in args.models:
            for with_cp in ((False, True) if args.with_cp else (False, )):
                r = results[model, with_cp] = run_fresh(size, model, with_cp,
                                                        args)
                if args.device == 'cpu' and not r['peak_reset']:
                    print('note: /proc/self/clear_refs refused: the peak '
                          'includes the build and the warm-up step')
                print(_row(size, model, with_cp, r, args.batch), flush=True)
        if ('global', False) in results and ('full', False) in results:
            ratio = (results['full', False]['seconds'] /
                     results['global', False]['seconds'])
            print(f'{size:5s} ratio full / global-only (time): {ratio:.3f}')
        for model in args.models:
            if (model, True) in results:
                plain, cp = results[model, False], results[model, True]
                act = [r['peak_bytes'] - r['base_bytes'] for r in (plain, cp)]
                saved = (f'{100 * (1 - act[1] / act[0]):.1f} %' if act[0] > 0
                         else 'n/a')
                print(f'{size:5s} {MODEL_NAMES[model]} with_cp vs without: '
                      f'act memory {saved} lower, step time '
                      f'x{cp["seconds"] / plain["seconds"]:.3f}')


if __name__ == '__main__':
    main()
