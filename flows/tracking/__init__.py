"""The one adapter to MLflow: the only code in flexo that imports `mlflow`.

- `runs`: where tracking lives, parent and child runs, what a run logs.
- `registry`: registered models and versions, their tags as governance records, aliases.
- `releases`: a release logged as a pyfunc model and registered; promotion.
- `release_model`: the pyfunc's code (models-from-code).
- `lineage`: a release's provenance, read from MLflow alone.
"""
