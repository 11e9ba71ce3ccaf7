"""A run's ``config.json`` as flat ``name -> value`` parameters.

TensorBoard's HParams plugin and MLflow both want one level of scalar parameters, while
``config.json`` nests the model spec, the hyperparameters and the data identity. Both mirrors
take their parameters from here so a run shows the same names in each: ``model.conv_filters``,
``hyperparameters.learning_rate``, ``dataset.sha256``...

Left out: the environment (machine and package versions: provenance, not a setting; the
mirrors keep the code version as a tag), the schema version, the data set's path on the
machine that trained (``dataset.source``: it differs between machines for the same data),
and lists too long to read as one value (the class names: ``config.json`` itself is kept
whole where a mirror stores files).
"""

from __future__ import annotations

import json

SKIPPED = frozenset({"schema_version", "environment", "dataset.source"})
MAX_LIST_CHARS = 250  # a list longer than this as JSON is not a parameter


def flat_params(config: dict) -> dict[str, str | int | float | bool | None]:
    """``config`` flattened with dotted names; lists as compact JSON text."""
    params: dict = {}

    def walk(prefix: str, value) -> None:
        if prefix in SKIPPED:
            return
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, (list, tuple)):
            text = json.dumps(value, separators=(",", ":"))
            if len(text) <= MAX_LIST_CHARS:
                params[prefix] = text
        else:
            params[prefix] = value

    walk("", config)
    return params
