"""samroto.core.model: the SAM 2 network and only that.

Configurations and presets, checkpoint reading, inference of the configuration and checks,
download and cache of the official files, the model (`sam2.SAM2Model`) and one module per
component, the reference-exact preprocessing, and the runtime (autocast, compile). It imports
torch, numpy and itself, nothing else of samroto: the network knows nothing of sessions.
"""
