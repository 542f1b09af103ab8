"""The web page comparing base and tuned replies side by side (Gradio); webui env."""
