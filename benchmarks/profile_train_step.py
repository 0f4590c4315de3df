"""Where a training step's time goes, module by module, on a real config.

Builds the config's Runner (datasets, model, optimizer wrapper and the
frozen-text cache, as in training), runs ``--warmup`` + ``--steps`` training
iterations and times, per step: waiting for the batch, the data preprocessor,
the forward and backward pass of each part of the model (forward hooks and
full backward hooks; CPU execution is synchronous), the rest of the
forward/backward (losses, glue) and the optimizer step.

A float input that needs no gradient (the images, the cached BERT outputs) is
given one inside the timed modules, so that the backward hook fires only
when the module's whole backward is done; that adds the (small) cost of those
input gradients to the module's backward. Without CUDA only.

Usage::

    python benchmarks/profile_train_step.py configs/mdrl_demo.py \
        [--steps 20] [--warmup 3] [--threads 2] [--cfg-options k=v ...]

Prints a Markdown table: milliseconds per step (forward, backward, both) and
the share of the step.
"""
import argparse
import os.path as osp
import tempfile
import time
from collections import defaultdict

import torch
from mmengine.config import Config, DictAction
from mmengine.runner import Runner

import mdrl_plugin  # noqa: F401

#: Timed parts: label -> attribute path in the model (classifiers are summed).
PARTS = {
    'ViT (image encoder)': 'image_encoder',
    'text: projection': 'text_encoder.proj',
    'text: LTE': 'text_encoder.lte',
    'DLL, image': 'image_local',
    'DLL, text': 'text_local',
    'CIM': 'cross_modal',
    'ID classifiers': ('image_classifier', 'text_classifier',
                       'local_classifier', 'cim_classifier'),
}


def _module(model: torch.nn.Module, path: str):
    for name in path.split('.'):
        model = getattr(model, name, None)
    return model


def _time_parts(model: torch.nn.Module, times: dict) -> None:
    starts = {}
    seen = set()
    for label, paths in PARTS.items():
        for path in (paths,) if isinstance(paths, str) else paths:
            m = _module(model, path)
            if m is None or id(m) in seen or not list(m.parameters()):
                continue
            seen.add(id(m))

            def fwd_pre(_m, args, key=path):
                starts['f' + key] = time.perf_counter()
                return tuple(
                    a.detach().requires_grad_() if torch.is_tensor(a)
                    and a.is_floating_point() and not a.requires_grad else a
                    for a in args)

            def fwd(_m, _i, _o, key=path, label=label):
                times[label, 'fwd'] += (time.perf_counter() -
                                        starts.pop('f' + key))

            def bwd_pre(_m, _g, key=path):
                starts.setdefault('b' + key, time.perf_counter())

            def bwd(_m, _gi, _go, key=path, label=label):
                times[label, 'bwd'] += (time.perf_counter() -
                                        starts.pop('b' + key))

            m.register_forward_pre_hook(fwd_pre)
            m.register_forward_hook(fwd)
            m.register_full_backward_pre_hook(bwd_pre)
            m.register_full_backward_hook(bwd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('--steps', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = tempfile.mkdtemp(prefix='profile_step_')
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    model, loader = runner.model, runner.train_dataloader
    optim = runner.optim_wrapper = runner.build_optim_wrapper(
        runner.optim_wrapper)
    for hook in runner.hooks:  # the frozen-text cache, as in training
        if type(hook).__name__ == 'FrozenTextCacheHook':
            hook.before_train(runner)

    times = defaultdict(float)
    _time_parts(model, times)
    total = defaultdict(float)
    model.train()
    batches = iter(loader)
    for step in range(args.warmup + args.steps):
        times.clear()
        t0 = time.perf_counter()
        data = next(batches)
        t1 = time.perf_counter()
        data = model.data_preprocessor(data, True)
        t2 = time.perf_counter()
        with optim.optim_context(model):
            loss, _ = model.parse_losses(model(**data, mode='loss'))
        t3 = time.perf_counter()
        optim.backward(loss)
        t4 = time.perf_counter()
        optim.step()
        optim.zero_grad()
        t5 = time.perf_counter()
        if step < args.warmup:
            continue
        for key, value in times.items():
            total[key] += value
        total['data: wait for the batch', 'fwd'] += t1 - t0
        total['data preprocessor', 'fwd'] += t2 - t1
        for phase, spent in (('fwd', t3 - t2), ('bwd', t4 - t3)):
            timed = sum(v for (_, p), v in times.items() if p == phase)
            total['frozen BERT (cache), losses, glue', phase] += spent - timed
        total['optimizer step', 'fwd'] += t5 - t4
        total['step', 'fwd'] += t5 - t0

    step_ms = 1e3 * total.pop(('step', 'fwd')) / args.steps
    labels = {label for label, _ in total}
    rows = sorted(((1e3 * total[label, 'fwd'] / args.steps,
                    1e3 * total[label, 'bwd'] / args.steps, label)
                   for label in labels), key=lambda r: -(r[0] + r[1]))
    print(f'config: {osp.basename(args.config)}, batch {loader.batch_size}, '
          f'{args.steps} steps after {args.warmup}, {args.threads} threads')
    print('| part | forward ms | backward ms | ms / step | share |')
    print('| --- | --- | --- | --- | --- |')
    for fwd, bwd, label in rows:
        print(f'| {label} | {fwd:.1f} | {bwd:.1f} | {fwd + bwd:.1f} | '
              f'{100 * (fwd + bwd) / step_ms:.1f} % |')
    print(f'| **step** | | | **{step_ms:.1f}** | 100 % |')


if __name__ == '__main__':
    main()
