"""Configuration: one dataclass per section, read from YAML, overridden as ``section.field=value``.

The core's sections (data, model, train, decode) are in :mod:`varattn.config.sections`; components
register theirs (:func:`register_section`). Every field carries its default, help text, range and
choices (:func:`setting`), so validation and ``varattn config show`` need nothing else.
"""

from varattn.config.fields import Section, count, fraction, positive, setting
from varattn.config.files import (RENAMED, RESUME_CHANGEABLE, apply_overrides, describe, flatten, from_dict,
                                  from_saved, load, resume_changes, save)
from varattn.config.registry import Config, register_section, section_owner, sections
from varattn.config.sections import POSTERIOR_PARAMS, DataConfig, DecodeConfig, ModelConfig, TrainConfig
from varattn.errors import UserError
from varattn.latent import MODE_RECORDS, MODES

__all__ = ["Config", "DataConfig", "DecodeConfig", "ModelConfig", "TrainConfig", "Section", "setting", "positive",
           "count", "fraction", "register_section", "section_owner", "sections", "load", "from_dict", "from_saved",
           "apply_overrides", "describe", "flatten", "resume_changes", "save", "RENAMED", "RESUME_CHANGEABLE",
           "POSTERIOR_PARAMS", "MODES", "MODE_RECORDS", "UserError"]
