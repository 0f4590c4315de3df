# MDRL (AAAI 2024) on ICFG-PEDES with the paper's recipe: ViT-B/16 + frozen
# bert-base-uncased with 2 LTE layers, DLL (P = Q = 4), CIM (K = 2), ID + CMPM
# losses, 384x128 images, text length 64, 150 epochs of SGD. The checkpoint is
# chosen on 300 held-out training identities (ICFG-PEDES has no val split), so
# the model trains on 3,102 - 300 = 2,802 identities; the papers' protocol
# (all 3,102 identities, validation on test) is mdrl_vit_bert_icfg_val_on_test.py.
_base_ = [
    '_base_/models/mdrl_vit_bert.py', '_base_/datasets/icfg_pedes.py',
    '_base_/schedules/sgd_150e.py', '_base_/default_runtime.py'
]

# ---- local paths: put the files here or change these three lines ----------
# ViT-B/16 ImageNet checkpoint (.pth/.bin/.safetensors state dict), e.g. timm's
# vit_base_patch16_224.augreg2_in21k_ft_in1k saved with torch.save(state_dict).
vit_pretrained = 'checkpoints/vit_base_patch16_224.pth'
# Hugging Face bert-base-uncased folder (config.json, weights, vocab.txt).
bert_path = 'checkpoints/bert-base-uncased'
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
