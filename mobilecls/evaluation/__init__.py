"""Evaluation: the metrics fit and eval share (``metrics``), ``evaluate`` / ``compare`` of .keras
and .tflite models, and where two models diverge (``divergence``). Importing this package
imports nothing else.
"""
