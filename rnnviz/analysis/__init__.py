"""What the store's activations mean: hypotheses, rankings, explanations and causal checks.

``features`` computes hypotheses from the text (in a quote, column, brace depth, ...); ``ranking`` ranks every
unit against them, with ``statistics`` (exact AUROC, average precision and Cohen's d of float16 columns by
counting); ``evidence`` says what a unit does, for a person; ``rules`` and ``explain`` explain every unit by
the best rule of a searched space; ``similar`` and ``two_state`` find the cells that mark a selection
(``on_threshold``: their θ); ``causal`` ablates units inside the recurrence
(``clamped`` runs the model with them clamped) and measures gradient flow;
``emergence`` records a run's weight snapshots and says when each cell appeared.
"""
