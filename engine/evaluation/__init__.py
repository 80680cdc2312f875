"""How good the explanations are and how fast: the baseline methods (:mod:`.baselines`, Captum), the
metrics (:mod:`.metrics`), the quality suite (:mod:`.suite`), the synthetic ground-truth data and CNNs
(:mod:`.synthetic`) and the speed benchmarks (:mod:`.bench`)."""
