# Study arm (c): random crop with padding and random erasing after the flip.
# IRRA pads 10 px at 384x128 and always crops; 5 px is the same fraction at
# the demo's 192x64. Erasing as in Zhong et al. (p 0.5, area 2-40 %, aspect
# 0.3-3.33), filled with the preprocessor's mean in the BGR order of
# LoadPersonImage, so the erased region is ~0 after normalisation.
_base_ = ['./demo_5e.py']

train_pipeline = [
    dict(type='LoadPersonImage'),
    dict(type='Resize', scale=(64, 192), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomCropPad', padding=5, prob=1.0),
    dict(type='RandomErasing', prob=0.5, area_ratio=(0.02, 0.4),
         aspect_ratio=(0.3, 3.33), fill=(103.53, 116.28, 123.675)),
    dict(type='PackTextImageInputs'),
]
# a child's train_pipeline does not reach the base's dataloader by itself
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
