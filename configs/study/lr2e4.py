# Study arm (b), the base rate re-checked: the chosen recipe
# (mean_epochs8.py, the demo config) at base learning rate 2e-4 instead of
# 3e-4 (every module, as in the demo), compared with it; lr5e4.py checks
# above.
_base_ = ['./mean_epochs8.py']

optim_wrapper = dict(optimizer=dict(lr=2e-4))
