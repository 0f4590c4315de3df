# Study arm (b): MDRL's new modules at 5x the base learning rate (IRRA's
# recipe) on the chosen recipe (mean_epochs8.py, the demo config), compared
# with it; the image backbone keeps the base rate, frozen BERT stays out.
# A key matches every parameter whose name contains it; the longest wins.
_base_ = ['./mean_epochs8.py']

new_module = dict(lr_mult=5.0)
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={
    'text_encoder.lte': new_module,
    'text_encoder.proj': new_module,
    'image_encoder.proj': new_module,
    'image_local': new_module,
    'text_local': new_module,
    'cross_modal': new_module,
    'classifier': new_module,  # image/text, local and CIM classifiers
}))
