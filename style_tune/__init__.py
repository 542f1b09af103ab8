"""style-tune: an XTuner recipe that fine-tunes Qwen2.5-1.5B-Instruct to chat in a chosen style.

One subpackage per toolchain, each importable in its own venv (``make setup`` builds them; the
project is an editable install in each, without dependencies). Each step runs as
``python -m style_tune.<part>.<step>``:

- ``core``: the prompt definitions and the styles file's reader, step helpers, atomic writes,
  argument and statistics helpers: standard library only, imported by every other part (any env,
  or plain python3).
- ``data``: CSV -> XTuner JSON split, data checks, the data card, lmdeploy chat templates
  (standard library only); ``data.generate`` (``make gen-data``) needs the eval env.
- ``train``: XTuner training, ``.pth`` -> HF adapter conversion, merge, the tiny stand-in models
  (train env).
- ``eval``: the OpenCompass runner, style evaluator and metrics, reports (eval env).
- ``deploy``: lmdeploy chat/serve launchers and the CPU OpenAI-compatible server (deploy env;
  ``deploy.chat`` itself is standard library only).
- ``webui``: the Gradio page comparing base and tuned replies (webui env).
- ``dev``: environment locks and mutation testing (dev and mutation envs); the GPU check's
  orchestration (``dev.gpu_acceptance``: standard library only, any python3 >= 3.10).
"""

from pathlib import Path

#: The repository: where style_data/, xtuner_configs/, eval_configs/ and the default outputs live.
REPO_ROOT = Path(__file__).resolve().parent.parent
