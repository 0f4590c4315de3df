# The paper's recipe: 150 epochs, SGD (momentum 0.9, weight decay 0.01),
# lr 7e-5, 10 warm-up epochs. The decay after warm-up is unspecified in the
# paper: cosine to 0, as in the field's common practice.
max_epochs = 150
warmup_epochs = 10
optim_wrapper = dict(
    type='OptimWrapper',
    # the frozen BERT's parameters are left out of the optimizer
    constructor='TrainableParamsOptimWrapperConstructor',
    optimizer=dict(type='SGD', lr=7e-5, momentum=0.9, weight_decay=0.01),
    # One rate for every module, as the paper states. Per-module rates (e.g.
    # IRRA's 5x for the new modules) are `paramwise_cfg=dict(custom_keys=
    # {'cross_modal': dict(lr_mult=5.0), ...})` (docs/training.md); on the
    # demo's val split 5x on the new modules lost on every seed (R1 -12.67,
    # configs/study/lr5x.py, docs/results/study_a_val), so none is set here.
    clip_grad=None)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0,
         end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=warmup_epochs,
         end=max_epochs, T_max=max_epochs - warmup_epochs, eta_min=0.0,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# The paper's batch size is unspecified: 64 on one GPU. Set this to the total
# batch the lr was tuned for, then `--auto-scale-lr` style scaling is possible.
auto_scale_lr = dict(base_batch_size=64, enable=False)
