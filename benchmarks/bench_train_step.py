"""Time one training step (forward, backward, optimizer) of full MDRL against
the global-only model (no DLL, no CIM), at a tiny size and at the paper's size.

The paper size is ViT-B/16 at 384x128 and BERT-base with text length 64 (the
BERT is built from its config with random weights: only the cost matters).
The printed ratio is full MDRL's step time over the global-only step time.

Usage:
    python benchmarks/bench_train_step.py [--batch 8] [--repeat 3]
        [--sizes tiny paper] [--device cpu|cuda] [--amp]
"""
import argparse
import statistics
import time

import torch
from mmengine.structures import BaseDataElement

import mdrl_plugin  # noqa: F401
from mdrl_plugin.registry import MODELS

BERT_BASE = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12,
                 num_attention_heads=12, intermediate_size=3072)
BERT_TINY = dict(vocab_size=30522, hidden_size=128, num_hidden_layers=2,
                 num_attention_heads=2, intermediate_size=256)


def model_cfg(size: str, full: bool) -> dict:
    if size == 'paper':
        img_size, vit, bert, heads = (384, 128), {}, BERT_BASE, 12
    else:
        img_size = (128, 64)
        vit = dict(embed_dim=128, depth=2, num_heads=2)
        bert, heads = BERT_TINY, 2
    cfg = dict(
        type='MDRL', num_classes=11003,
        image_encoder=dict(type='TimmVisionTransformer', arch='vit_base_patch16_224',
                           img_size=img_size, arch_kwargs=vit),
        text_encoder=dict(type='BertTextEncoder', bert_config=bert,
                          num_lte_layers=2, num_heads=heads))
    if full:
        cfg.update(
            image_local=dict(type='DisorderedLocalLearning', num_groups=4, num_heads=heads),
            cross_modal=dict(type='CrossModalInteraction', num_layers=2, num_heads=heads))
    return cfg, img_size


def bench(size: str, full: bool, batch: int, repeat: int, device: str,
          amp: bool, amp_dtype: str = 'bf16') -> dict:
    torch.manual_seed(0)
    cfg, img_size = model_cfg(size, full)
    model = MODELS.build(cfg).to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=7e-5, momentum=0.9, weight_decay=0.01)
    images = torch.randn(batch, 3, *img_size, device=device)
    ids = torch.randint(1000, 30000, (batch, 64), device=device)
    ids[:, 0], ids[:, -1] = 101, 102
    inputs = dict(images=images, input_ids=ids,
                  attention_mask=torch.ones_like(ids))
    samples = [BaseDataElement(metainfo=dict(gt_label=i % 11003)) for i in range(batch)]
    dtype = torch.bfloat16 if amp_dtype == 'bf16' else torch.float16

    def step():
        with torch.autocast(device, dtype=dtype, enabled=amp):
            loss = sum(model(inputs, samples, mode='loss').values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device == 'cuda':
            torch.cuda.synchronize()

    step()  # warm-up
    if device == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    out = dict(seconds=statistics.median(times),
               params=sum(p.numel() for p in params))
    if device == 'cuda':
        out['peak_gib'] = torch.cuda.max_memory_allocated() / 2**30
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--sizes', nargs='+', default=['tiny', 'paper'])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--amp', action='store_true', help='autocast')
    parser.add_argument('--amp-dtype', choices=['bf16', 'fp16'], default='bf16')
    args = parser.parse_args()
    name = (torch.cuda.get_device_name() if args.device == 'cuda' else
            f'cpu, {torch.get_num_threads()} threads')
    amp = args.amp_dtype if args.amp else 'off (fp32)'
    print(f'device: {name}; batch {args.batch}; amp {amp}; '
          f'median of {args.repeat} steps after a warm-up step')
    for size in args.sizes:
        run = (args.batch, args.repeat, args.device, args.amp, args.amp_dtype)
        base = bench(size, False, *run)
        full = bench(size, True, *run)
        for name, r in (('global-only', base), ('full MDRL', full)):
            extra = f"  peak {r['peak_gib']:.2f} GiB" if 'peak_gib' in r else ''
            print(f'{size:5s} {name:12s} {r["seconds"]:8.3f} s/step  '
                  f'{args.batch / r["seconds"]:7.2f} samples/s  '
                  f'{r["params"] / 1e6:6.1f} M trainable{extra}')
        print(f'{size:5s} ratio full / global-only: '
              f'{full["seconds"] / base["seconds"]:.3f}')


if __name__ == '__main__':
    main()
