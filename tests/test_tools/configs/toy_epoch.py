# The toy config with an epoch-based loop, for the compare tool's test
# (tools/analysis_tools/compare.py): 3 iterations per epoch, validated every
# epoch, the best val accuracy's checkpoint kept by save_best.
_base_ = ['./toy_iter.py']

train_dataloader = dict(sampler=dict(type='DefaultSampler', shuffle=True))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.5, by_epoch=True, begin=0, end=1),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=3, T_max=2),
]
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=3,
                 val_interval=1)
default_hooks = dict(
    checkpoint=dict(interval=1, by_epoch=True, max_keep_ckpts=1,
                    save_best='toy/accuracy', rule='greater'))
log_processor = dict(by_epoch=True)
