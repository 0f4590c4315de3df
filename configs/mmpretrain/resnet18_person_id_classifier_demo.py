# Mixing libraries by config, the other direction: an mmpretrain model and
# runtime (default_scope='mmpretrain') trained on a text-based person search
# dataset with the plugin's data parts. mmpretrain's ImageClassifier
# (ResNet-18, global average pooling, linear identity head) learns the training
# identities from the images of the plugin's `CUHKPEDES` dataset (its training
# entries carry `img_path` and `gt_label`, which mmpretrain's own transforms
# read), drawn in identity-balanced batches by the plugin's
# `IdentityBalancedSampler` (P identities x K images, as re-ID training does).
# Needs the `mmpretrain` extra. The demo data:
# `python tools/make_demo_data.py data/demo`.
#
# Evaluation is mmpretrain's Accuracy on the training identities' images: a
# closed-set classifier cannot score the unseen identities of the val/test
# splits, and the plugin's PersonRetrievalMetric ranks captions against images
# (text-to-image), which an image-only model does not produce.
default_scope = 'mmpretrain'
custom_imports = dict(imports=['mdrl_plugin'], allow_failed_imports=False)

data_root = 'data/demo'
num_classes = 200  # training identities of the demo data
img_size = (192, 64)  # (H, W)

model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(
        num_classes=num_classes,
        mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=dict(type='ResNet', depth=18, num_stages=4, out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead', num_classes=num_classes, in_channels=512,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1),
        topk=(1, 5)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_size[1], img_size[0]), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_size[1], img_size[0]), keep_ratio=False),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32, num_workers=1, persistent_workers=False,
    sampler=dict(type='mdrl_plugin.IdentityBalancedSampler', batch_size=32,
                 num_instances=4),
    dataset=dict(type='mdrl_plugin.CUHKPEDES', data_root=data_root,
                 split='train', pipeline=train_pipeline))
# training entries (`gt_label`) of the training split, without augmentation
val_dataloader = dict(
    batch_size=64, num_workers=1, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='mdrl_plugin.CUHKPEDES', data_root=data_root,
                 split='train', test_mode=False, pipeline=test_pipeline))
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

max_epochs = 8
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05))
param_scheduler = dict(type='CosineAnnealingLR', by_epoch=True,
                       T_max=max_epochs, eta_min=1e-5)
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=4)
val_cfg = dict()
test_cfg = dict()

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=10),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=4, max_keep_ckpts=1),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
log_processor = dict(window_size=10)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
