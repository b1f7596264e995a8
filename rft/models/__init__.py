"""Models: resolution of HF directories, GGUF files, the embedded default and tiny test models."""
