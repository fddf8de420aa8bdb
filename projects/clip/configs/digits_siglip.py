"""`digits.py` with SigLIP's sigmoid loss and learned logit bias instead of CLIP's InfoNCE.

    scenic-eqx train --config projects/clip/configs/digits_siglip.py --workdir workdirs/siglip_digits

The same pairs, sizes, steps and zero-shot evaluation as `digits.py`; the model is
`siglip.py`'s `SigLIP` (`nn.CLIP` and a learned bias started at -10, the temperature at
log 10, as in Zhai et al. 2023), the task `ContrastiveTask(loss_type="sigmoid")`.
Reaches 95.6% zero-shot top-1 accuracy on the 360 held-out digits (chance: 10%; see
projects/clip/README.md).
"""

import os

import ml_collections

from scenic_eqx import run

_CONFIGS = os.path.dirname(os.path.abspath(__file__))
run.import_file(os.path.join(_CONFIGS, "..", "siglip.py"))  # registers `siglip_digits`
digits = run.import_file(os.path.join(_CONFIGS, "digits.py"))


def get_config() -> ml_collections.ConfigDict:
    config = digits.get_config()
    config.model_name = "siglip_digits"
    config.task = ml_collections.ConfigDict(dict(loss_type="sigmoid", recall_at=(1, 5)))
    return config
