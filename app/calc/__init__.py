"""Pure LoRA arithmetic: architecture from config.json, exact trainable parameters, scaling, memory, lints.

No torch, transformers, peft, web or database imports here: the calculator must answer in microseconds.

Entry point for other packages::

    from app.calc import compute, CalcRequest, LoraSpec, CalcTrainingSpec

    result = compute({
        "model": "smollm2-135m-instruct",            # a catalogue id, or "model_config": {...config.json...}
        "lora": {"r": 16, "lora_alpha": 32, "target_modules": ["q_proj", "v_proj"]},
        "training": {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 4,
                     "max_seq_length": 512, "gradient_checkpointing": False,
                     "base_dtype": "bf16", "optim": "adamw_torch", "devices": 1},
    })
    result.trainable_params        # int, equal to peft's get_nb_trainable_parameters()[0]
    result.memory.total_bytes      # int, estimated peak bytes per device

`compute(request: CalcRequest | dict, catalogue: Catalogue | None = None) -> CalcResult` raises
`pydantic.ValidationError` (a field is invalid: `.errors()` gives loc and msg) or `FieldError`
(the input is valid alone but not for this model: `.loc`, `.message`); both subclass ValueError.
`LoraSpec(**lora_dict)` validates LoraConfig fields alone, with peft's names and defaults.
"""

from app.calc.catalogue import Catalogue, CatalogueModel, load_catalogue
from app.calc.compute import compute
from app.spec.errors import FieldError
from app.calc.request import CalcRequest
from app.calc.result import CalcResult
from app.spec.lora import LoraSpec
from app.spec.training import CalcTrainingSpec

__all__ = ["CalcRequest", "CalcResult", "CalcTrainingSpec", "Catalogue", "CatalogueModel", "FieldError", "LoraSpec", "compute", "load_catalogue"]
