"""Which modules PEFT wraps with a LoRA layer, for the references (lora_ref.py) and the tests."""
import re


def peft_targets(a, key):
    """PEFT's check_target_module_exists (tuners_utils.py) for a module key such as
    "model.layers.0.self_attn.q_proj": exclude_modules first, then target_modules; a string is a
    regex for re.fullmatch ("all-linear" in any case: every linear layer but lm_head), a list names
    keys exactly or by a ".name" suffix, null is the model type's default (q_proj, v_proj for the
    Llama family)."""
    def hit(spec, linear_shorthand):
        if isinstance(spec, str):
            if linear_shorthand and spec.lower() == "all-linear":
                return key.rsplit(".", 1)[-1] != "lm_head"
            return re.fullmatch(spec, key) is not None
        return key in spec or any(key.endswith("." + t) for t in spec)
    exc = a.get("exclude_modules")
    if exc and hit(exc, False):
        return False
    tgt = a.get("target_modules")
    return hit(["q_proj", "v_proj"] if tgt is None else tgt, True)

