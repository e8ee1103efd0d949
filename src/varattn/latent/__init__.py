"""The latent core: attention as a latent variable, every objective of Deng et al. (2018), and the
mode records that tell the rest of the package what each mode needs. Imports nothing of varattn."""

from varattn.latent.objectives import *  # noqa: F401,F403
from varattn.latent.objectives import __all__ as _objectives_all

__all__ = list(_objectives_all)
from varattn.latent.modes import MODE_RECORDS, Mode, get_mode  # noqa: E402
from varattn.latent.evaluation import evaluation_terms  # noqa: E402
from varattn.latent.batch import LatentOutput, batch_objective, evaluation_sums  # noqa: E402

__all__ += ["MODE_RECORDS", "Mode", "evaluation_terms", "get_mode", "LatentOutput", "batch_objective",
            "evaluation_sums"]
