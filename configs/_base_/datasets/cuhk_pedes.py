# CUHK-PEDES (Li et al., CVPR 2017): 11,003 training identities.
# data_root is the folder holding imgs/ and reid_raw.json.
dataset_type = 'CUHKPEDES'
data_root = 'data/CUHK-PEDES'
img_size = (384, 128)  # (H, W)

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
    batch_size=64,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type, data_root=data_root, split='train',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=64,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type, data_root=data_root, split='val',
        pipeline=test_pipeline))
test_dataloader = dict(
    batch_size=64,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type, data_root=data_root, split='test',
        pipeline=test_pipeline))
val_evaluator = dict(type='PersonRetrievalMetric')
test_evaluator = val_evaluator
