"""Evaluation with OpenCompass: runner, style evaluator, metrics, reports, reply scoring; eval env."""
