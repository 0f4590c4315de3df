# Study arm (e): the demo recipe trained 8 epochs instead of 5 (same warm-up,
# cosine decay over the longer schedule, validation from epoch 3).
_base_ = ['./demo_5e.py']

max_epochs = 8
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=max_epochs,
         T_max=max_epochs - 1, eta_min=1e-5, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
