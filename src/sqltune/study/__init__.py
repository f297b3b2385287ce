"""Many runs: search over hyperparameters here with Optuna, and compare runs side by side.

    space.py     a Determined `hyperparameters:` block as a search space (grid points, Optuna distributions)
    search.py    `sqltune search`: a search YAML checked and laid out as Optuna trials (searcher, space, rungs)
    trials.py    running them here: the study, workers, a killed search's trials retried, Optuna fed
    runs.py      runs as a comparison reads them: run folders, search folders, a Determined master
    compare.py   `sqltune compare`: the ranked table, the HTML report, TensorBoard HParams
    plots.py     the report's PNG plots
"""
