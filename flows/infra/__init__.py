"""Running flexo for a consortium (issue 17): the MLflow server's auth app, identities and
permissions from the policy, registry events, and `flexo infra` around infra/local."""
