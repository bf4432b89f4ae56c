"""Research and training, outside the installed package: the method study and its measured compute, cache-dit as
a peer, the demo models' trainers and their class-fidelity check. Run from the repository root, e.g.
``python -m research.method_study`` or ``python -m research.train_demo``; the tests import them from here."""
