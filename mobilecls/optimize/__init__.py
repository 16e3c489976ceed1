"""Model optimisation that returns new models: magnitude pruning and quantization-aware training."""
