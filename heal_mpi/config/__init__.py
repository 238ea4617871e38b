"""Run configuration: TOML sections as frozen dataclasses, overrides, validation, and the config as text.

Owns every option's name, type, default, allowed range and meaning (each field's `opt`; `heal-mpi
config` prints them as the README's reference). The kinds of protocol, overlay, attack and fault,
their own options and checks come from the registries (heal_mpi/registry.py), plug-ins included.
Anything a user can get wrong fails here, before any rank writes a byte, with one line naming
the dotted key. Light: imports neither mpi4py nor torch.

    sections.py  the dataclasses          fields.py  one table -> one dataclass, checked
    parse.py     TOML and --set -> Config checks.py  contradictions across keys
    text.py      Config -> TOML, the README's generated blocks
"""

from heal_mpi.config.checks import byzantine_count, validate
from heal_mpi.config.fields import COUNT_MAX, INT_MAX
from heal_mpi.config.parse import from_dict, load, parse_override, read_toml
from heal_mpi.config.sections import (SECTIONS, AdversaryConfig, Config, DataConfig, EvalConfig, FaultsConfig,
                                      ModelConfig, NodesConfig, OverlayConfig, ProtocolConfig, RunConfig, TimeConfig,
                                      TrainConfig)
from heal_mpi.config.text import (chosen_options, kinds_markdown, reference_markdown, summary, to_toml, toml_value,
                                  update_readme)
from heal_mpi.errors import ConfigError

__all__ = ["AdversaryConfig", "COUNT_MAX", "Config", "ConfigError", "DataConfig", "EvalConfig", "FaultsConfig",
           "INT_MAX", "ModelConfig", "NodesConfig", "OverlayConfig", "ProtocolConfig", "RunConfig", "SECTIONS",
           "TimeConfig", "TrainConfig", "byzantine_count", "chosen_options", "from_dict", "kinds_markdown", "load",
           "parse_override", "read_toml", "reference_markdown", "summary", "to_toml", "toml_value", "update_readme", "validate"]
