"""One module per cache method: its config, its policy, its presets, declared as ``METHOD = Method(...)``
(cache/registry.py). Adding a method is adding a file here."""
