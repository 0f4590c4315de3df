# The demo recipe the study started from (configs/mdrl_demo.py before issue
# 24, commit cbc679e): 5 epochs, local features concatenated in the matching
# loss. The study's reference arm (its records name it 'full', after
# configs/ablation/full.py of that commit); every single-choice arm below
# changes this recipe in one place.
_base_ = ['../mdrl_demo.py']

max_epochs = 5
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=max_epochs,
         T_max=max_epochs - 1, eta_min=1e-5, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
model = dict(local_aggregation='concat')
