"""Text-encoder LoRAs with the peft that is installed.

transformers 5.24's ``load_adapter`` asks for peft >= 0.22, which is not released yet;
diffusers loads a text encoder's LoRA through it. ``allow_text_encoder_adapters`` gives
each text encoder of a pipeline a ``load_adapter`` made of the same two peft calls
(inject the layers, load their weights) and the bookkeeping diffusers reads
(``peft_config``), only while transformers refuses the installed peft. Drop it once the
pinned transformers and peft agree.
"""

from __future__ import annotations

from typing import Any


def _transformers_accepts_peft() -> bool:
    from transformers.integrations.peft import MIN_PEFT_VERSION
    from transformers.utils.peft_utils import check_peft_version

    try:
        check_peft_version(min_version=MIN_PEFT_VERSION)
    except ValueError:
        return False
    return True


def allow_text_encoder_adapters(pipe: Any) -> None:
    if _transformers_accepts_peft():
        return
    for encoder in (pipe.text_encoder, pipe.text_encoder_2):
        if encoder is not None:
            encoder.load_adapter = _loader(encoder)


def _loader(model: Any) -> Any:
    from peft import inject_adapter_in_model, set_peft_model_state_dict

    def load_adapter(
        *, adapter_name: str, adapter_state_dict: dict[str, Any], peft_config: Any, **_: Any
    ) -> None:
        inject_adapter_in_model(peft_config, model, adapter_name=adapter_name)
        set_peft_model_state_dict(model, adapter_state_dict, adapter_name=adapter_name)
        if not getattr(model, "_hf_peft_config_loaded", False):
            model.peft_config = {}
            model._hf_peft_config_loaded = True
        model.peft_config[adapter_name] = peft_config

    return load_adapter
