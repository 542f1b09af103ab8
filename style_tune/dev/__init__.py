"""Developer tools: environment locks (dev env) and mutation testing (mutation env)."""
