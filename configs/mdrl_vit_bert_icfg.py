# MDRL (AAAI 2024) on ICFG-PEDES with the paper's recipe: ViT-B/16 + frozen
# bert-base-uncased with 2 LTE layers, DLL (P = Q = 4), CIM (K = 2), ID + CMPM
# losses, 384x128 images, text length 64, 150 epochs of SGD. The checkpoint is
# chosen on 300 held-out training identities (ICFG-PEDES has no val split), so
# the model trains on 3,102 - 300 = 2,802 identities; the papers' protocol (all
# 3,102 identities, validation on test) is mdrl_vit_bert_icfg_val_on_test.py.
_base_ = [
    '_base_/models/mdrl_vit_bert.py', '_base_/datasets/icfg_pedes.py',
    '_base_/schedules/sgd_150e.py', '_base_/default_runtime.py'
]

# ---- pretrained weights and data ------------------------------------------
# Hub names, downloaded once into the Hugging Face cache (HF_HOME); offline:
# `python tools/fetch_weights.py <this config>` first (docs/training.md). A
# local folder/file of the same name wins. For local copies, uncomment the
# last two lines.
bert_path = 'bert-base-uncased'  # Hugging Face id (or a local model folder)
vit_pretrained = 'vit_base_patch16_224.orig_in21k_ft_in1k'  # timm tag/file/URL
# bert_path = 'checkpoints/bert-base-uncased'
# vit_pretrained = 'checkpoints/vit_b16.pth'
data_root = 'data/ICFG-PEDES'
# ---------------------------------------------------------------------------

model = dict(
    num_classes=2802,  # 3,102 training ids - 300 held out as val
    data_preprocessor=dict(tokenizer=bert_path),
    image_encoder=dict(pretrained=vit_pretrained),
    text_encoder=dict(pretrained=bert_path))
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = dict(dataset=dict(data_root=data_root))
