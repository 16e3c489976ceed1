"""Reports from result files: the eval/bench table and Pareto plot (``report``), the study's
tables and Fig. 3 (``study``), the model zoo's index and cards (``zoo``). Importing this package
imports nothing else.
"""
