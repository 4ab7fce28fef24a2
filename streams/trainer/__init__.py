"""The trainer service: learning triggers in, LoRA cycles in a child process, learning results out."""
