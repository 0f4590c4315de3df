# A toy iteration-based config for the engine and tool tests (seconds on CPU).
# Needs tests/test_tools on PYTHONPATH (custom_imports below).
custom_imports = dict(imports=['toy_components'], allow_failed_imports=False)
default_scope = 'mdrl_plugin'

model = dict(type='ToyModel', shuffle_hidden=True)

train_pipeline = [
    dict(type='mmcv.RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='ToyPack'),
]
test_pipeline = [dict(type='ToyPack')]

train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type='ToyDataset', num_samples=10, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=3,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type='ToyDataset', num_samples=7, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='ToyMetric')
test_evaluator = val_evaluator

optim_wrapper = dict(
    type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1, momentum=0.9))
param_scheduler = [dict(type='LinearLR', start_factor=0.5, by_epoch=False,
                        begin=0, end=4)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=8, val_interval=4)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=1),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False,
                    backend_args=dict(backend='local_atomic')),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)
custom_hooks = [
    dict(type='FiniteLossHook'),
    dict(type='ExactResumeHook'),
]
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='gloo'),
)
log_processor = dict(window_size=1, by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=7, deterministic=True)
