"""varattn: latent alignment and variational attention for sequence models."""

__version__ = "0.1.0"
