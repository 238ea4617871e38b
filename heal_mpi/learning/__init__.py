"""The learning engine: datasets, partitions, models, optimizers, and a rank's node population.

Modules (imported where used; this package imports nothing eagerly, so that the config
checks can read `datasets` without loading torch):
    datasets.py   load_dataset, check_dataset_files (files and formats; NumPy only)
    partition.py  partition_indices, load_local_data -> LocalData
    models.py     build_model, param_count, ParamLayout
    optim.py      Optimizer (init/step on stacked rows)
    backends.py   the loop and vmap training backends
    population.py Population: rows, train, replace, evaluate
"""
