"""The learning engine: datasets, partitions, models, optimizers, and a rank's node population.

Public API:
    load_local_data(data_cfg, seed, n_nodes, slot_lo, slot_hi, device) -> LocalData
    check_dataset_files(data_cfg) -> None            (raises DatasetError)
    partition_indices(labels, n_nodes, data_cfg, seed) -> list[np.ndarray]
    build_model(model_cfg, input_shape, num_classes) -> nn.Module;  param_count(model) -> int
    Optimizer (init/step on stacked rows)
    Population(model_cfg, train_cfg, eval_cfg, data, seed, device): rows, train, replace, evaluate
"""

from heal_mpi.learning.datasets import DatasetError, RawDataset, check_dataset_files, load_dataset
from heal_mpi.learning.models import ParamLayout, build_model, param_count
from heal_mpi.learning.optim import Optimizer
from heal_mpi.learning.partition import LocalData, load_local_data, local_data_from, partition_indices
from heal_mpi.learning.population import Population

__all__ = [
    "DatasetError", "RawDataset", "check_dataset_files", "load_dataset",
    "ParamLayout", "build_model", "param_count", "Optimizer",
    "LocalData", "load_local_data", "local_data_from", "partition_indices", "Population",
]
