"""The lecture's losses, each a few lines of minigrad ops (their gradients come
from the engine; tests/ check them against direct NumPy evaluations and with
gradcheck).
"""
from __future__ import annotations

import minigrad as mg

# ============================================================================ VAE family
# (ELBO, Gaussian KL, reconstruction terms, reparameterisation)


# ============================================================================ metric learning
# (contrastive and triplet losses, pairwise distances)


# ============================================================================ GANs
# (discriminator / generator losses, gradient penalty)
