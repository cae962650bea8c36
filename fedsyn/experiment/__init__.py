"""The experiment's vocabulary, shared by every layer above it: the YAML schema (``schema``), the grid
of cells it expands to (``grid``) and the name lists the schema accepts (``names``).

This package imports only the building blocks below it (attacks, biomod, models, data, defenses) and
never the task, evaluation, results, federation, sweep or report packages.
"""
