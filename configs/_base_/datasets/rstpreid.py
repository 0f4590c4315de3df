# RSTPReid (Zhu et al., ACM MM 2021): 3,701 training identities.
# data_root is the folder holding imgs/ and data_captions.json.
_base_ = ['./cuhk_pedes.py']

dataset_type = 'RSTPReid'
data_root = 'data/RSTPReid'
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
