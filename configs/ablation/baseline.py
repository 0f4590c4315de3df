# Ablation, baseline: the global branch only (ID + matching losses on the
# global features), retrieval by the global features. Everything else is
# configs/mdrl_demo.py. Run the sweep with tools/analysis_tools/compare.py
# (docs/compare.md) or one run with `python tools/train.py <this file>`.
_base_ = ['../mdrl_demo.py']

model = dict(image_local=None, cross_modal=None, retrieval_features='global')
