"""Training of the suite's own models: ResShift (latent or pixel space), SR3-style, unconditional priors.

One loop (:class:`resshift.train.loop.Trainer`) serves every model kind through a small *objective*
object (:mod:`resshift.train.objectives`): it builds the network, computes the loss of a batch and
writes the final checkpoint in the format the matching SR method loads. Data are random HR patches
from a folder of images with LR made on the fly (:mod:`resshift.train.data`). Entry point:
``python -m resshift.train.app`` (Hydra configs in ``eval/train/``), or ``nox -s train``.
"""
