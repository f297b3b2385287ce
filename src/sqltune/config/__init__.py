"""The experiment YAML -> typed hyperparameters, one module per concern (axolotl's split schemas).

    experiment.py       the YAML and `--set` overrides -> an Experiment (resolve, validate, report all)
    hyperparameters.py  the `hyperparameters:` block: the blocks below, and the rules that span them
    model.py lora.py quantization.py data.py prompt.py (format:) train.py evaluation.py (eval:) grpo.py
                        one block each, with its own cross-field rules as pydantic validators
    preflight.py        the checks that look outside the config (files, packages, transformers), once
    base.py             what every block shares
"""

from sqltune.config.data import DataSettings, SourceSpec, source_specs
from sqltune.config.evaluation import EvalSettings
from sqltune.config.experiment import SEARCH_TYPES, Experiment, build, load, parse_overrides, read_yaml
from sqltune.config.grpo import GRPOSettings, RewardWeights
from sqltune.config.hyperparameters import Hyperparameters
from sqltune.config.lora import LoraSettings
from sqltune.config.model import ModelSettings
from sqltune.config.preflight import local_model_problem, looks_local
from sqltune.config.prompt import DEFAULT_SYSTEM_PROMPT, FormatSettings
from sqltune.config.quantization import QuantizationSettings
from sqltune.config.train import TrainSettings
from sqltune.errors import ConfigError

__all__ = ["DEFAULT_SYSTEM_PROMPT", "SEARCH_TYPES", "ConfigError", "DataSettings", "EvalSettings", "Experiment",
           "FormatSettings", "GRPOSettings", "Hyperparameters", "LoraSettings", "ModelSettings", "QuantizationSettings",
           "RewardWeights", "SourceSpec", "TrainSettings", "build", "load", "local_model_problem", "looks_local",
           "parse_overrides", "read_yaml", "source_specs"]
