# Mixing libraries by config: the demo's MDRL (configs/mdrl_demo.py) with an
# mmpretrain VisionTransformer as image encoder, through `BackboneAdapter`.
# Needs the `mmpretrain` extra (`pip install -e .[mmpretrain]`). The ViT has
# the demo ViT's size (width 192, 4 layers, 3 heads: a short DeiT-tiny) and is
# trained from scratch; `out_type='raw'` gives [cls] + patch tokens, read by
# the adapter as f_g^I and the visual tokens.
_base_ = ['mdrl_demo.py']

img_size = (192, 64)  # (H, W), as in mdrl_demo.py
embed_dims = 256
# An mmpretrain model-zoo checkpoint (an ImageClassifier's, keys `backbone.*`)
# loads through MMEngine's initialisation, e.g.
#   backbone=dict(..., init_cfg=dict(type='Pretrained',
#       checkpoint='checkpoints/deit-tiny_in1k.pth', prefix='backbone.'))
model = dict(
    image_encoder=dict(
        _delete_=True,
        type='BackboneAdapter',
        backbone=dict(
            type='mmpretrain.VisionTransformer',
            arch=dict(embed_dims=192, num_layers=4, num_heads=3,
                      feedforward_channels=768),
            img_size=img_size,
            patch_size=16,
            drop_path_rate=0.0,
            out_type='raw'),
        probe_size=img_size,
        out_channels=embed_dims))
