"""Check that a tiny MDRL gives the same losses, features and gradients on CUDA
as on the CPU (evaluation mode, so the grouping is fixed). Prints the largest
differences; exits non-zero when they exceed the tolerance."""
import sys

import torch
from mmengine.structures import BaseDataElement

import mdrl_plugin  # noqa: F401
from mdrl_plugin.registry import MODELS


def main() -> int:
    torch.manual_seed(0)
    cfg = dict(
        type='MDRL', num_classes=10,
        image_encoder=dict(
            type='TimmVisionTransformer', img_size=(64, 32),
            drop_path_rate=0.0,
            arch_kwargs=dict(embed_dim=64, depth=2, num_heads=4)),
        text_encoder=dict(
            type='BertTextEncoder', num_lte_layers=2, num_heads=4,
            dropout=0.0, bert_config=dict(
                vocab_size=100, hidden_size=64, num_hidden_layers=2,
                num_attention_heads=4, intermediate_size=128)),
        image_local=dict(type='DisorderedLocalLearning', num_groups=3,
                         num_heads=4),
        cross_modal=dict(type='CrossModalInteraction', num_layers=2,
                         num_heads=4))
    cpu = MODELS.build(cfg).eval()
    gpu = MODELS.build(cfg).eval()
    gpu.load_state_dict(cpu.state_dict())
    gpu.cuda()
    ids = torch.randint(5, 100, (6, 12))
    ids[:, 0] = 2
    mask = torch.ones_like(ids)
    mask[::2, 8:] = 0  # some padding
    images = torch.randn(6, 3, 64, 32)
    samples = [BaseDataElement(metainfo=dict(gt_label=i % 3))
               for i in range(6)]
    worst = 0.0
    out = {}
    for name, model, dev in (('cpu', cpu, 'cpu'), ('cuda', gpu, 'cuda')):
        inputs = dict(images=images.to(dev), input_ids=ids.to(dev),
                      attention_mask=mask.to(dev))
        losses = model(inputs, samples, mode='loss')
        sum(losses.values()).backward()
        feats = model(inputs, mode='tensor')
        grad = model.image_encoder.vit.patch_embed.proj.weight.grad
        out[name] = (losses, feats, grad)
    for key in out['cpu'][0]:
        d = (out['cpu'][0][key] - out['cuda'][0][key].cpu()).abs().item()
        worst = max(worst, d / max(1.0, out['cpu'][0][key].abs().item()))
        print(f'{key:20s} cpu {out["cpu"][0][key].item():.6f}  diff {d:.2e}')
    for key in ('image_feats', 'text_feats'):
        d = (out['cpu'][1][key] - out['cuda'][1][key].cpu()).abs().max().item()
        worst = max(worst, d)
        print(f'{key:20s} max diff {d:.2e}')
    d = (out['cpu'][2] - out['cuda'][2].cpu()).abs().max().item()
    rel = d / out['cpu'][2].abs().max().item()
    worst = max(worst, rel)
    print(f'patch-embed grad     max rel diff {rel:.2e}')
    print('OK' if worst < 1e-3 else 'MISMATCH', f'(worst {worst:.2e})')
    return 0 if worst < 1e-3 else 1


if __name__ == '__main__':
    sys.exit(main())
