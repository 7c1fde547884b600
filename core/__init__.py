"""samroto.core: the SAM 2 model, image predictor, video sessions, frames, mattes and shapes."""
