"""Training: ``train.fit`` (a recipe into a resumable run folder), the time budget (``budget``),
the run folder's manifest (``run_state``) and its plots (``plots``). Importing this package
imports nothing else.
"""
