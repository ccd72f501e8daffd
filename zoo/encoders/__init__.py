"""Encoders: raw input -> features. Each exposes ``out_dim`` and what it ``consumes``.

    image   (B, 3, H, W) float in [0, 1] -> (B, D); ``grid(images)`` -> (B, N, C) for attention
    tokens  (B, T) long                  -> (B, T, D)
    frames  (B, T, 3, H, W)              -> (B, T, D)

An image encoder with ``frozen = True`` is a fixed function of the image: its features
can be computed once and cached (:mod:`zoo.tasks.feature_cache`). A pretrained one also
publishes ``input_transform`` (:class:`zoo.encoders.transform.InputTransform`): the resize, crop
and normalisation its weights expect, applied in its forward and part of the cache's key.
"""
