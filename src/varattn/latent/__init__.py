"""The latent core: attention as a latent variable, every objective of Deng et al. (2018), the mode
records that tell the rest of the package what each mode needs, every evaluation term, and the one
batch→loss path. Imports nothing else of varattn."""

from varattn.latent.batch import LatentOutput, batch_objective, evaluation_sums, posterior_scores, token_terms
from varattn.latent.chain import *  # noqa: F401,F403
from varattn.latent.chain import __all__ as _chain_all
from varattn.latent.evaluation import evaluation_terms
from varattn.latent.modes import Mode
from varattn.latent.objectives import *  # noqa: F401,F403
from varattn.latent.objectives import __all__ as _objectives_all

__all__ = list(_objectives_all) + list(_chain_all) + ["token_terms", "Mode", "evaluation_terms", "LatentOutput", "batch_objective",
                                   "evaluation_sums", "posterior_scores"]
