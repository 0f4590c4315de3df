# Study arm (d): the image and text identity terms are averaged (as IRRA does)
# instead of summed: id_global and id_local each sum an image and a text
# cross-entropy, so weight 0.5 averages them. CIM's single term is unchanged.
_base_ = ['./demo_5e.py']

model = dict(loss_weights=dict(id_global=0.5, id_local=0.5))
