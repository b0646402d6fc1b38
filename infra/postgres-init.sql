-- The databases of the consortium's servers (compose and Kubernetes; infra/local/up.sh creates
-- the same ones): MLflow's backend store, MLflow's auth database, Prefect's database.
CREATE DATABASE mlflow;
CREATE DATABASE mlflow_auth;
CREATE DATABASE prefect;
