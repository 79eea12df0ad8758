"""torchreid's frame models on tracklets: the one model contract the engine and the feature extractor see.

Every model the plugin trains takes tracklets (B, T, 3, H, W). In training it returns a dict of
logits and features (``logits_cls``, ``feat_cls``, ... : the VLD loss reads them); in eval mode the
(B, D) feature. VLD models do so themselves; a torchreid model (frames (N, 3, H, W) in) is made to
by :func:`frame_wise`, which runs it on the B*T frames and averages its outputs over T (temporal
average pooling).
"""


class FrameWise:
    """Mixin over a torchreid model class: tracklets in, frame outputs averaged over time out."""

    def forward(self, imgs):
        b, t = imgs.shape[:2]
        out = super().forward(imgs.flatten(0, 1))

        def pool(x):
            return x.reshape(b, t, -1).mean(1)

        if not self.training:
            return pool(out)
        if isinstance(out, (tuple, list)):  # loss='triplet': (logits, features)
            return {"logits_cls": pool(out[0]), "feat_cls": pool(out[1])}
        return {"logits_cls": pool(out)}


_CLASSES = {}  # torchreid model class -> its FrameWise subclass


def frame_wise(model):
    """``model`` (a torchreid ``nn.Module`` taking frames) made to take tracklets, in place.

    Its class becomes a subclass mixing in :class:`FrameWise`: the parameters, the state-dict keys
    (checkpoints stay interchangeable with torchreid's) and the named layers (``train.open_layers``)
    are unchanged.
    """
    cls = type(model)
    if issubclass(cls, FrameWise):
        return model
    if cls not in _CLASSES:
        _CLASSES[cls] = type(f"FrameWise{cls.__name__}", (FrameWise, cls), {})
    model.__class__ = _CLASSES[cls]
    return model
