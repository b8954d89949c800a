"""The experiments behind the README's figures, one module each, run as ``python -m``.

``python -m experiments.saddle`` (or ``layered_scaling``, ``leader_vs_easgd``,
``which_variant``, ``netns_validation``) from the repository root. Each prints
readable tables and, as its last stdout line, one JSON object with every
figure. Grids of scenario variants all go through :func:`experiments.grid.run_grid`;
the JSON line and number formatting through :mod:`experiments.report`.
"""
