"""samroto.core.matting: ViTMatte, a learned matting model run on the tracked masks' edges.

One module per part: `backbone` (ViT with windowed and global attention and residual convolution
blocks), `detail_capture` (the convolution stream), `fusion_decoder`; `config` holds the dataclass
configurations and the `vitmatte-small` / `vitmatte-base` presets; `checkpoint` loads the Hugging
Face and the original repository's weights strictly. Imports: torch, numpy, samroto.core.model.
"""

from .checkpoint import MattingCheckpointError, infer_config, load_matting_model, read_state_dict, to_samroto_names
from .config import HF_REPOSITORIES, PRESETS, BackboneConfig, MattingConfig, MattingConfigError, matting_preset
from .model import MattingModel

__all__ = [
    "HF_REPOSITORIES",
    "PRESETS",
    "BackboneConfig",
    "MattingCheckpointError",
    "MattingConfig",
    "MattingConfigError",
    "MattingModel",
    "infer_config",
    "load_matting_model",
    "matting_preset",
    "read_state_dict",
    "to_samroto_names",
]
