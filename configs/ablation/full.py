# Ablation, full MDRL: configs/mdrl_demo.py as it is (DLL + CIM, retrieval by
# global + local features). A file of its own so that the sweep names it.
_base_ = ['../mdrl_demo.py']
