"""The release as an MLflow pyfunc (models-from-code: this file is the model's code, no pickle).

    model = mlflow.pyfunc.load_model("models:/flexo-release@production")
    model.predict(["The patient"], params={"max_new_tokens": 20, "exclude": "legal-aid"})

    mlflow models serve -m "models:/flexo-release@production" --env-manager local
    curl localhost:5000/invocations -H 'Content-Type: application/json' \\
        -d '{"inputs": ["The patient"], "params": {"exclude": "legal-aid"}}'

Loads the HF checkpoint stored with the version through flexo's runtime (negative router biases
applied; FLEXO_HOME's deny-list re-read before every pass). Per call: `only` / `exclude` switch
experts (comma-separated contributor ids; naming a withdrawn one in `only` is refused),
`max_new_tokens`, `temperature` (0: greedy, the default, so a prompt gives the same text), `seed`
for sampling, `attribution` (`routing` or `loo`: each expert's part in the output). Each output
is a `Generation`. The signature's ParamSchema comes from the input example logged with the model
(`releases.EXAMPLE_PARAMS`): MLflow drops any request param it does not declare. Every generation
appends an attribution record (numbers only) under FLEXO_HOME, as the consumer `mlflow-pyfunc`.
"""

from __future__ import annotations

from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel
from mlflow.pyfunc.utils import pyfunc
from pydantic import BaseModel

CONSUMER = "mlflow-pyfunc"


class Generation(BaseModel):
    text: str  # the continuation, without the prompt
    experts_on: list[str]  # public first
    routing: dict[str, float] | None = None  # with `attribution`: each expert's routing share
    loo: dict[str, float] | None = None  # with `attribution: loo`: log-likelihood drop (nats)


def _ids(value: Any) -> list[str] | None:
    return [x for x in str(value or "").split(",") if x] or None


class FlexoRelease(PythonModel):
    def load_context(self, context) -> None:
        from pathlib import Path

        from components.checkpoints import load_tokenizer
        from components.runtime import load_flexo_model
        from flows.withdrawals import deny_list_path

        self.directory = Path(context.artifacts["checkpoint"])
        self.release = self.directory.resolve().name
        # FLEXO_HOME's deny-list, re-read on every call: a withdrawal reaches a served model
        # on its next request
        self.model = load_flexo_model(self.directory, deny_list=deny_list_path())
        self.tokenizer = load_tokenizer(self.directory)

    @pyfunc
    def predict(self, context, model_input: list[str],
                params: dict[str, Any] | None = None) -> list[Generation]:
        import torch

        from components.errors import FlexoError
        from components.runtime import apply_selection, expert_names
        from flows.attribution import record_generation
        from flows.withdrawals import denied, refuse_denied

        params = params or {}
        attribution = str(params.get("attribution") or "")
        if attribution not in ("", "routing", "loo"):
            raise MlflowException(f"attribution '{attribution}' is unknown; use routing or loo",
                                  INVALID_PARAMETER_VALUE)
        only, exclude = _ids(params.get("only")), _ids(params.get("exclude"))
        try:
            refuse_denied(CONSUMER, only or [])
            active = apply_selection(self.model, only=only, exclude=exclude)
        except FlexoError as e:
            raise MlflowException(str(e), INVALID_PARAMETER_VALUE) from None
        gone = denied()
        on = [n for n, flag in zip(expert_names(self.model.config), active, strict=True)
              if flag and n not in gone]
        temperature = float(params.get("temperature") or 0.0)
        torch.manual_seed(int(params.get("seed") or 0))
        sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 \
            else {"do_sample": False}
        outputs = []
        for prompt in model_input:
            ids = self.tokenizer(prompt, return_tensors="pt").input_ids
            generated = self.model.generate(ids, max_new_tokens=int(params.get("max_new_tokens")
                                                                    or 32),
                                            pad_token_id=self.tokenizer.pad_token_id, **sampling)
            found = record_generation(self.model, generated, ids.shape[1], self.release, on,
                                      CONSUMER, loo=attribution == "loo")
            outputs.append(Generation(
                text=self.tokenizer.decode(generated[0, ids.shape[1]:], skip_special_tokens=True),
                experts_on=on, routing=found.routing if attribution else None,
                loo={k: v for k, v in (found.loo or {}).items() if v is not None}
                if attribution == "loo" else None))
        return outputs


mlflow.models.set_model(FlexoRelease())
