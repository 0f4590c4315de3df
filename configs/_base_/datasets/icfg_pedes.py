# ICFG-PEDES (Ding et al., 2021): 3,102 training and 1,000 test identities; the
# release has no val split. Checkpoints are chosen on a val split of 300
# training identities held out by a fixed seeded rule (see ICFGPEDES and
# docs/datasets.md): training uses the other 2,802 identities. The papers'
# protocol (train on all 3,102, validate on test) is
# configs/mdrl_vit_bert_icfg_val_on_test.py.
# data_root is the folder holding imgs/ and ICFG-PEDES.json.
_base_ = ['./cuhk_pedes.py']

dataset_type = 'ICFGPEDES'
data_root = 'data/ICFG-PEDES'
# the train and the val dataset must hold out the same identities
val_from_train = dict(num_ids=300, seed=0)
train_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root,
                 val_from_train=val_from_train))
val_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root, split='val',
                 val_from_train=val_from_train))
test_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
