# Study arm: the two choices that won alone, together: 8 epochs (epochs8.py)
# with the local features averaged over the groups in the matching loss
# (mean.py). Compared with epochs8.py, so that mean is judged at 8 epochs.
_base_ = ['./epochs8.py']

model = dict(local_aggregation='mean')
