# toy_epoch.py whose val score peaks before the last epoch: 'toy/scripted' is
# 40, 70, 50 after epochs 1, 2, 3 (read from the model's step counter, so a
# checkpoint is scored as at its epoch's validation); save_best follows it.
_base_ = ['./toy_epoch.py']

val_evaluator = dict(type='ToyMetric', script=[0.0, 40.0, 70.0, 50.0],
                     steps_per_epoch=3)
test_evaluator = val_evaluator
default_hooks = dict(checkpoint=dict(save_best='toy/scripted'))
