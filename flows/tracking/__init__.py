"""The one adapter to MLflow: the only code in flexo that imports `mlflow`.

- `runs`: where tracking lives, parent and child runs, what a run logs.
- `registry`: registered models and versions, their tags as governance records, aliases.
- `releases`: a release logged as a pyfunc model and registered; promotion.
- `release_model`: the pyfunc's code (models-from-code).
- `lineage`: a release's provenance, read from MLflow alone.
- `auth_app`: `mlflow server --app-name flexo-auth`, basic-auth plus the registry's write rules.
- `users`: the policy's identities as MLflow users with their roles' permissions.
- `webhooks`: the events receiver's registry webhook.
"""
