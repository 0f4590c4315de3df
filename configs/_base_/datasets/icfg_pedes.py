# ICFG-PEDES (Ding et al., 2021): 3,102 training identities. It has no val
# split: validation runs on the test split, as the field's codebases do.
# data_root is the folder holding imgs/ and ICFG-PEDES.json.
_base_ = ['./cuhk_pedes.py']

dataset_type = 'ICFGPEDES'
data_root = 'data/ICFG-PEDES'
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root, split='test'))
test_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
