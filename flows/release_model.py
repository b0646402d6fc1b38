"""The release as an MLflow pyfunc (models-from-code: this file is the model's code, no pickle).

    model = mlflow.pyfunc.load_model("models:/flexo-release@production")
    model.predict(["The patient"], params={"max_new_tokens": 20, "exclude": "legal-aid"})

Loads the HF checkpoint stored with the version through flexo's runtime (router biases applied);
`exclude` switches experts off per call (comma-separated contributor ids). Greedy decoding, so
the same prompt gives the same text.
"""

from __future__ import annotations

import mlflow
from mlflow.pyfunc import PythonModel


class FlexoRelease(PythonModel):
    def load_context(self, context) -> None:
        from components.checkpoints import load_tokenizer
        from components.runtime import load_flexo_model

        self.directory = context.artifacts["checkpoint"]
        self.model = load_flexo_model(self.directory)
        self.tokenizer = load_tokenizer(self.directory)

    def predict(self, context, model_input, params: dict | None = None) -> list[str]:
        from components.runtime import apply_selection

        params = params or {}
        prompts = (model_input.iloc[:, 0].tolist() if hasattr(model_input, "iloc")
                   else list(model_input))
        exclude = [x for x in str(params.get("exclude", "")).split(",") if x]
        apply_selection(self.model, exclude=exclude or None)
        outputs = []
        for prompt in prompts:
            ids = self.tokenizer(prompt, return_tensors="pt").input_ids
            generated = self.model.generate(ids, max_new_tokens=int(params.get("max_new_tokens", 32)),
                                            do_sample=False,
                                            pad_token_id=self.tokenizer.pad_token_id)
            outputs.append(self.tokenizer.decode(generated[0, ids.shape[1]:],
                                                 skip_special_tokens=True))
        return outputs


mlflow.models.set_model(FlexoRelease())
