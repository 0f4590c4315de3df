# Runtime shared by all configs.
default_scope = 'mdrl_plugin'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # keep the best checkpoint by text-to-image Rank-1 and the latest ones;
    # atomic writes: a kill during a save never leaves a partial file behind
    checkpoint=dict(
        type='CheckpointHook', interval=1, max_keep_ckpts=2, save_best='R1',
        rule='greater', backend_args=dict(backend='local_atomic')),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)
custom_hooks = [
    # load_from / resume: safe under torch >= 2.6 (MMEngine checkpoints hold
    # numpy and HistoryBuffer objects) and strict (weights that do not fit
    # the model raise CheckpointMismatchError instead of a warning)
    dict(type='CheckpointLoadingHook'),
    # model.num_classes must equal the training split's number of identities
    dict(type='NumClassesCheckHook'),
    # stop at the first NaN/inf loss term, naming it, before it is saved
    dict(type='FiniteLossHook'),
    # RNG states in every checkpoint: a resumed run ends like an
    # uninterrupted one (with randomness.deterministic=True)
    dict(type='ExactResumeHook'),
    # a frozen BERT's outputs are computed once per caption and memory-mapped
    # from <work_dir>/text_cache (bit-identical to computing them every step;
    # set cache_dir to share it between runs, enabled=False to turn it off)
    dict(type='FrozenTextCacheHook'),
]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),  # gloo is used automatically without CUDA
)

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='Visualizer', vis_backends=vis_backends)
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
