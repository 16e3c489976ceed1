"""The model zoo: ``build_model(name, **kw)`` and ``list_models()``."""

from mobilecls.models.registry import build_model, list_models

__all__ = ["build_model", "list_models"]
