# Study arm (c): augmentation (random crop with padding, random erasing) on
# the chosen recipe (mean_epochs8.py, the demo config), compared
# with it.
_base_ = ['./mean_epochs8.py']

train_pipeline = [
    dict(type='LoadPersonImage'),
    dict(type='Resize', scale=(64, 192), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomCropPad', padding=5, prob=1.0),
    dict(type='RandomErasing', prob=0.5, area_ratio=(0.02, 0.4),
         aspect_ratio=(0.3, 3.33), fill=(103.53, 116.28, 123.675)),
    dict(type='PackTextImageInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
