# Study arm (b), the base rate re-checked upwards: the chosen recipe
# (mean_epochs8.py, the demo config) at base learning rate 5e-4 instead of
# 3e-4 (every module), compared with it over 3 seeds; lr2e4.py checks below.
_base_ = ['./mean_epochs8.py']

optim_wrapper = dict(optimizer=dict(lr=5e-4))
