# Composition example: MDRL with IRRA's similarity distribution matching (SDM)
# loss in place of CMPM, for both the global and the local features, and
# features gathered across GPUs so the matching covers the global batch.
_base_ = ['mdrl_vit_bert_cuhk.py']

model = dict(
    matching_loss=dict(
        _delete_=True, type='SDMLoss', temperature=0.02,
        gather_across_ranks=True))
