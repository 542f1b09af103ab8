"""Chat and serving: the lmdeploy launcher (chat: standard library) and the CPU server; deploy env."""
