"""samroto.core.outputs: what a tracked shot becomes.

Matte files, the matte output (refinement, smoothing, confidence beside the mattes), edges,
confidence and Bezier shapes. Torch-free, so mattes and shapes are made and tested without a model.
"""
