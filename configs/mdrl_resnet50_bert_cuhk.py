# Composition example: MDRL's DLL and CIM over a CNN. The last ResNet-50
# feature map (12x4 at 384x128) is flattened into 48 visual tokens, which the
# disordered local learning and cross-modal interaction modules use exactly as
# they use ViT patches. Everything else is the paper's recipe on CUHK-PEDES.
_base_ = ['mdrl_vit_bert_cuhk.py']

# torchvision's ImageNet ResNet-50 as a timm tag (Hugging Face cache), or a
# local file such as 'checkpoints/resnet50.pth'
resnet_pretrained = 'resnet50.tv_in1k'

model = dict(
    data_preprocessor=dict(
        mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375]),
    image_encoder=dict(
        _delete_=True,
        type='TimmCNNEncoder',
        arch='resnet50',
        pretrained=resnet_pretrained,
        out_channels=768))  # project 2048 -> BERT's width
