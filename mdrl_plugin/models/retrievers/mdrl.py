"""The MDRL model: wires encoders, DLL, CIM and losses."""
import math
from typing import Dict, List, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement

from mdrl_plugin.registry import MODELS

__all__ = ['MDRL']

LOSS_TERMS = ('id_global', 'id_local', 'id_cim', 'match_global', 'match_local')


@MODELS.register_module()
class MDRL(BaseModel):
    """Multi-modal disordered representation learning network (AAAI 2024).

    Training (``mode='loss'``): the image encoder gives :math:`f_g^I` and the
    visual tokens, the text encoder (frozen BERT + LTE) :math:`f_g^T` and the
    text tokens; the DLL necks give P image and Q text local features; CIM
    fuses the tokens of each pair into :math:`f_c`. Losses: identity
    cross-entropy on global features (``id_global``), local features
    (``id_local``, averaged over groups) and :math:`f_c` (``id_cim``); the
    matching loss (CMPM by default) on global features (``match_global``) and
    on the aggregated local features (``match_local``). A term whose weight is
    0, or whose module is absent, is not computed.

    Retrieval (``mode='predict'``): L2-normalised image and caption features,
    one matrix product apart; CIM never runs.

    Args:
        image_encoder: Config of the image encoder (returns global, tokens).
        text_encoder: Config of the text encoder (returns global, tokens,
            padding mask).
        num_classes: Number of training identities (the dataset's
            ``metainfo['num_classes']``).
        image_local: Config of the image DLL neck, or None to disable local
            learning. ``embed_dims`` defaults to the encoders' width.
        text_local: Config of the text DLL neck (None: same as image_local).
        share_local: Use one local encoder for both modalities.
        cross_modal: Config of CIM, or None to disable it.
        classifier: Config of the identity classifiers (``in_channels`` and
            ``num_classes`` are filled in).
        share_id_classifier: One classifier for image and text features
            (default) or one per modality.
        id_loss: Config of the identity loss.
        matching_loss: Config of the image-text matching loss.
        loss_weights: Weights of the terms ``id_global``, ``id_local``,
            ``id_cim``, ``match_global``, ``match_local`` (default 1.0 each).
        local_aggregation: How local features enter ``match_local``:
            ``'concat'`` (needs P == Q) or ``'mean'`` over groups.
        retrieval_features: ``'global'`` or ``'global+local'`` (global and the
            local features from fixed grouping, each L2-normalised, then
            concatenated and normalised; needs P == Q).
        data_preprocessor: Config of the data preprocessor.
        init_cfg: MMEngine init config.
    """

    def __init__(self,
                 image_encoder: dict,
                 text_encoder: dict,
                 num_classes: int,
                 image_local: Optional[dict] = None,
                 text_local: Optional[dict] = None,
                 share_local: bool = False,
                 cross_modal: Optional[dict] = None,
                 classifier: dict = dict(type='IdentityClassifier'),
                 share_id_classifier: bool = True,
                 id_loss: dict = dict(type='IDLoss'),
                 matching_loss: dict = dict(type='CMPMLoss'),
                 loss_weights: Optional[Dict[str, float]] = None,
                 local_aggregation: str = 'concat',
                 retrieval_features: str = 'global',
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if isinstance(data_preprocessor, dict):
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.image_encoder = MODELS.build(image_encoder)
        self.text_encoder = MODELS.build(text_encoder)
        dims = self.image_encoder.out_channels
        if self.text_encoder.out_channels != dims:
            raise ValueError(
                'Image and text encoders must output the same width, got '
                f'{dims} (image) and {self.text_encoder.out_channels} (text); '
                'set out_channels of one of them')
        if num_classes < 1:
            raise ValueError(f'num_classes must be >= 1, got {num_classes}')
        self.embed_dims = dims
        self.num_classes = num_classes

        loss_weights = loss_weights or {}
        unknown = set(loss_weights) - set(LOSS_TERMS)
        if unknown:
            raise KeyError(f'Unknown loss_weights keys {sorted(unknown)}; '
                           f'known: {list(LOSS_TERMS)}')
        self.loss_weights = dict(dict.fromkeys(LOSS_TERMS, 1.0),
                                 **loss_weights)

        def build_dims(cfg: dict) -> nn.Module:
            cfg = dict(cfg)
            cfg.setdefault('embed_dims', dims)
            return MODELS.build(cfg)

        self.image_local = build_dims(image_local) if image_local else None
        self.text_local = (  # None without image_local
            self.image_local if share_local or not image_local else
            build_dims(text_local or image_local))
        self.cross_modal = build_dims(cross_modal) if cross_modal else None

        def build_classifier() -> nn.Module:
            return MODELS.build(
                dict(classifier, in_channels=dims, num_classes=num_classes))

        self.image_classifier = build_classifier()
        self.text_classifier = (self.image_classifier if share_id_classifier
                                else build_classifier())
        self.local_classifier = (build_classifier() if self.image_local
                                 else None)
        self.cim_classifier = build_classifier() if self.cross_modal else None
        self.id_loss = MODELS.build(id_loss)
        self.matching_loss = MODELS.build(matching_loss)

        if local_aggregation not in ('concat', 'mean'):
            raise ValueError("local_aggregation must be 'concat' or 'mean', "
                             f'got {local_aggregation!r}')
        if retrieval_features not in ('global', 'global+local'):
            raise ValueError("retrieval_features must be 'global' or "
                             f"'global+local', got {retrieval_features!r}")
        if self.image_local is not None:
            P, Q = self.image_local.num_groups, self.text_local.num_groups
            if P != Q and (local_aggregation == 'concat'
                           or retrieval_features == 'global+local'):
                raise ValueError(
                    f'Image and text local modules have {P} and {Q} groups: '
                    "local_aggregation='concat' and retrieval_features="
                    "'global+local' need equal numbers of groups")
        elif retrieval_features == 'global+local':
            raise ValueError(
                "retrieval_features='global+local' needs image_local")
        self.local_aggregation = local_aggregation
        self.retrieval_features = retrieval_features

    # ------------------------------------------------------------ features
    def _retrieval_feat(self, global_feat: torch.Tensor,
                        local_feats: Optional[torch.Tensor]) -> torch.Tensor:
        feat = F.normalize(global_feat.float(), dim=-1)
        if local_feats is None:
            return feat
        parts = [feat[:, None], F.normalize(local_feats.float(), dim=-1)]
        return (torch.cat(parts, dim=1).flatten(1) /
                math.sqrt(1 + local_feats.shape[1]))

    def extract_image_feat(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised retrieval features ``[B, D']`` of images."""
        global_feat, tokens = self.image_encoder(images)
        local = (self.image_local(global_feat, tokens)
                 if self.retrieval_features == 'global+local' else None)
        return self._retrieval_feat(global_feat, local)

    def extract_text_feat(self, input_ids: torch.Tensor,
                          attention_mask: torch.Tensor) -> torch.Tensor:
        """L2-normalised retrieval features ``[T, D']`` of captions."""
        global_feat, tokens, padding = self.text_encoder(
            input_ids, attention_mask)
        local = (self.text_local(global_feat, tokens, padding)
                 if self.retrieval_features == 'global+local' else None)
        return self._retrieval_feat(global_feat, local)

    # ------------------------------------------------------------ modes
    def forward(self,
                inputs: Dict[str, torch.Tensor],
                data_samples: Optional[List[BaseDataElement]] = None,
                mode: str = 'tensor') -> Union[dict, list]:
        """Dispatch to :meth:`loss`, :meth:`predict` or :meth:`_forward`.

        Args:
            inputs: ``dict(images, input_ids, attention_mask)``.
            data_samples: Data samples of the batch.
            mode: ``'loss'``, ``'predict'`` or ``'tensor'``.

        Returns:
            dict of losses, list of data samples, or dict of features.
        """
        modes = dict(loss=self.loss, predict=self.predict,
                     tensor=self._forward)
        if mode not in modes:
            raise ValueError(
                f"Invalid mode {mode!r}: use 'loss', 'predict' or 'tensor'")
        return modes[mode](inputs, data_samples)

    def _forward(
            self,
            inputs: Dict[str, torch.Tensor],
            data_samples: Optional[list] = None) -> Dict[str, torch.Tensor]:
        """Retrieval features of the batch: ``image_feats`` and
        ``text_feats``."""
        out = dict(image_feats=self.extract_image_feat(inputs['images']))
        if inputs.get('input_ids') is not None and inputs['input_ids'].numel():
            out['text_feats'] = self.extract_text_feat(inputs['input_ids'],
                                                       inputs['attention_mask'])
        return out

    def predict(self, inputs: Dict[str, torch.Tensor],
                data_samples: List[BaseDataElement]) -> List[BaseDataElement]:
        """Attach ``img_feat`` ``[D']`` and ``text_feats`` ``[n_i, D']``
        to samples."""
        feats = self._forward(inputs)
        counts = [1 if 'text' in s else len(s.get('texts', []))
                  for s in data_samples]
        image_feats = feats['image_feats']
        text_feats = feats.get('text_feats', image_feats[:0])
        for sample, img_feat, txt in zip(data_samples, image_feats,
                                         text_feats.split(counts)):
            sample.img_feat = img_feat
            sample.text_feats = txt
        return data_samples

    def _labels(self, data_samples: List[BaseDataElement]) -> torch.Tensor:
        try:
            labels = [int(s.gt_label) for s in data_samples]
        except AttributeError as err:
            raise KeyError(
                'MDRL.loss needs `gt_label` in every data sample; '
                'build the training dataset with split="train"') from err
        # the label range is checked once, by IDLoss (the classifier's owner);
        # NumClassesCheckHook compares num_classes with the dataset up front
        return torch.as_tensor(
            labels, device=self.image_classifier.fc.weight.device)

    def loss(self, inputs: Dict[str, torch.Tensor],
             data_samples: List[BaseDataElement]) -> Dict[str, torch.Tensor]:
        """Compute the named losses of a batch of image-caption pairs.

        Returns:
            dict: ``loss_<term>`` for each active term, already weighted.
        """
        labels = self._labels(data_samples)
        if inputs['input_ids'].shape[0] != labels.shape[0]:
            raise ValueError('MDRL.loss needs exactly one caption per image '
                             '(training data samples with `text`)')
        w = self.loss_weights
        img_g, img_tok = self.image_encoder(inputs['images'])
        txt_g, txt_tok, txt_pad = self.text_encoder(inputs['input_ids'],
                                                    inputs['attention_mask'])
        losses = dict()
        if w['match_global']:
            losses['loss_match_global'] = (
                w['match_global'] * self.matching_loss(img_g, txt_g, labels))
        if w['id_global']:
            losses['loss_id_global'] = w['id_global'] * (
                self.id_loss(self.image_classifier(img_g), labels) +
                self.id_loss(self.text_classifier(txt_g), labels))
        if (self.image_local is not None
                and (w['id_local'] or w['match_local'])):
            img_l = self.image_local(img_g, img_tok)
            txt_l = self.text_local(txt_g, txt_tok, txt_pad)
            if w['id_local']:
                P, Q = img_l.shape[1], txt_l.shape[1]
                id_img = self.id_loss(
                    self.local_classifier(img_l).flatten(0, 1),
                    labels.repeat_interleave(P))
                id_txt = self.id_loss(
                    self.local_classifier(txt_l).flatten(0, 1),
                    labels.repeat_interleave(Q))
                losses['loss_id_local'] = w['id_local'] * (id_img + id_txt)
            if w['match_local']:
                if self.local_aggregation == 'concat':
                    agg_i, agg_t = img_l.flatten(1), txt_l.flatten(1)
                else:
                    agg_i, agg_t = img_l.mean(1), txt_l.mean(1)
                losses['loss_match_local'] = w['match_local'] * (
                    self.matching_loss(agg_i, agg_t, labels))
        if self.cross_modal is not None and w['id_cim']:
            f_c = self.cross_modal(img_tok, txt_tok, txt_pad)
            losses['loss_id_cim'] = w['id_cim'] * self.id_loss(
                self.cim_classifier(f_c), labels)
        return losses
