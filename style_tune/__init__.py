"""style-tune: shared definitions for the XTuner style fine-tuning recipe.

Everything here is standard-library Python so that the split tool, the XTuner configs,
the chat templates and the evaluation code can all import the same definitions.
"""
