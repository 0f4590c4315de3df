# Ablation baseline: the global branch only (no DLL, no CIM): ViT + frozen
# BERT + LTE with ID + CMPM on the global features. The paper's "baseline" row.
_base_ = ['mdrl_vit_bert_cuhk.py']

model = dict(image_local=None, text_local=None, cross_modal=None)
