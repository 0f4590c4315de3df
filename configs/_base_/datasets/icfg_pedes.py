# ICFG-PEDES (Ding et al., 2021): 3,102 training identities. It has no val
# split: validation runs on the test split, as the field's codebases do.
# data_root is the folder holding imgs/ and ICFG-PEDES.json.
dataset_type = 'ICFGPEDES'
data_root = 'data/ICFG-PEDES'
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
        type=dataset_type, data_root=data_root, split='test',
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
