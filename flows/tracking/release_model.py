"""The release as an MLflow pyfunc (models-from-code: this file is the model's code, no pickle).

    model = mlflow.pyfunc.load_model("models:/flexo-release@production")
    model.predict(["The patient"], params={"max_new_tokens": 20, "exclude": "legal-aid"})

Loads the HF checkpoint stored with the version through flexo's runtime (negative router biases
applied). Per call: `only` / `exclude` switch experts (comma-separated contributor ids),
`max_new_tokens`, `temperature` (0: greedy, the default, so a prompt gives the same text) and
`seed` for sampling. The signature, params included, comes from these type hints and the input
example logged with the model (`releases.EXAMPLE_PARAMS`).
"""

from __future__ import annotations

from typing import Any

import mlflow
from mlflow.pyfunc import PythonModel
from mlflow.pyfunc.utils import pyfunc


def _ids(value: Any) -> list[str] | None:
    return [x for x in str(value or "").split(",") if x] or None


class FlexoRelease(PythonModel):
    def load_context(self, context) -> None:
        from components.checkpoints import load_tokenizer
        from components.runtime import load_flexo_model
        from flows.withdrawals import deny_list_path

        self.directory = context.artifacts["checkpoint"]
        # FLEXO_HOME's deny-list, re-read on every call: a withdrawal reaches a served model
        # on its next request
        self.model = load_flexo_model(self.directory, deny_list=deny_list_path())
        self.tokenizer = load_tokenizer(self.directory)

    @pyfunc
    def predict(self, context, model_input: list[str],
                params: dict[str, Any] | None = None) -> list[str]:
        import torch

        from components.runtime import apply_selection

        params = params or {}
        apply_selection(self.model, only=_ids(params.get("only")),
                        exclude=_ids(params.get("exclude")))
        temperature = float(params.get("temperature") or 0.0)
        torch.manual_seed(int(params.get("seed") or 0))
        outputs = []
        for prompt in model_input:
            ids = self.tokenizer(prompt, return_tensors="pt").input_ids
            sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 \
                else {"do_sample": False}
            generated = self.model.generate(ids, max_new_tokens=int(params.get("max_new_tokens")
                                                                    or 32),
                                            pad_token_id=self.tokenizer.pad_token_id, **sampling)
            outputs.append(self.tokenizer.decode(generated[0, ids.shape[1]:],
                                                 skip_special_tokens=True))
        return outputs


mlflow.models.set_model(FlexoRelease())
