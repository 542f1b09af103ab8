"""The style data: CSV -> XTuner JSON split, data checks and card, chat templates (standard library only);
generate (`make gen-data`: new rows through an OpenAI-compatible API) needs the eval env."""
