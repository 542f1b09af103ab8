"""The style data: CSV -> XTuner JSON split, data checks, data card, lmdeploy chat templates; standard library only (any env)."""
