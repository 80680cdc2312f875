"""Classifiers and their inputs: loading models and weights safely (:mod:`.loading`), preprocessing
(:mod:`.preprocess`), reading images (:mod:`.images`), checks of input files (:mod:`.inputs`) and the
bundled read-only resources (:mod:`.resources`).

Light on purpose: importing this package (or ``engine.models.resources``) does not import torch."""
