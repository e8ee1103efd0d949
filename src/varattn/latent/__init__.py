"""The latent core: attention as a latent variable, every objective of Deng et al. (2018), and the
mode records that tell the rest of the package what each mode needs. Imports nothing of varattn."""

from varattn.latent.objectives import *  # noqa: F401,F403
from varattn.latent.objectives import __all__ as _objectives_all

__all__ = list(_objectives_all)
