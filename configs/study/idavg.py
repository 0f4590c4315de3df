# Study arm (d): the image and text identity terms are averaged (as IRRA does)
# instead of summed, on the chosen recipe (mean_epochs8.py, the demo config),
# compared with it: id_global and id_local each sum an image and a text
# cross-entropy, so weight 0.5 averages them. CIM's single term is unchanged.
_base_ = ['./mean_epochs8.py']

model = dict(loss_weights=dict(id_global=0.5, id_local=0.5))
