# Study arm (a): local features enter the matching loss averaged over the
# groups, not concatenated. In training, image group p and caption group p are
# independent random subsets, so concatenation pairs parts that share nothing.
_base_ = ['./demo_5e.py']

model = dict(local_aggregation='mean')
