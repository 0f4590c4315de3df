# Ablation, +CIM: the baseline plus cross-modal interaction (its ID loss; CIM
# never runs at retrieval); retrieval by the global features, since the local
# ones need the DLL modules. No disordered local learning.
_base_ = ['../mdrl_demo.py']

model = dict(image_local=None, retrieval_features='global')
