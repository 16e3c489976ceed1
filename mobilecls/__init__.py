"""mobilecls: real-time image classification on mobile devices with lightweight CNNs.

The public API. Importing it does not import TensorFlow; the first model built does.
"""

from mobilecls.models.registry import build_model, list_models

__all__ = ["build_model", "list_models"]
