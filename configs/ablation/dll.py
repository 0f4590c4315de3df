# Ablation, +DLL: the baseline plus disordered local learning (local ID and
# matching losses); retrieval by the features of configs/mdrl_demo.py
# (global + local). No cross-modal interaction.
_base_ = ['../mdrl_demo.py']

model = dict(cross_modal=None)
