"""One module per model family: a Family subclass (weightless knowledge) and its torch Parts.
models/registry.py finds them here; adding a family is adding a file."""
