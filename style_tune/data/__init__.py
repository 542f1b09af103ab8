"""The style data: CSV -> XTuner JSON split, data checks and card, chat templates; standard library only."""
