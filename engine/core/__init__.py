"""The method: :func:`explain` (one call, :mod:`.fgvis`), the mask optimisation of a batch
(:mod:`.optimisation`), the 0/1 sharpening (:mod:`.binarize`), the reference image and pass
(:mod:`.reference`), the per-call defense against adversarial evidence (:mod:`.defense`), the model's
forward/backward pass of a step (:mod:`.model_pass`), the configuration and result types
(:mod:`.explanation`), and the process settings for CPU work: the thread count (:mod:`.threads`) and
the C allocator's thresholds (:mod:`.allocator`).

Layering: ``core`` uses ``engine.models`` (a classifier and its input) and ``engine.errors``; it imports
nothing from ``engine.results`` or ``engine.evaluation`` (tests/engine/test_architecture.py)."""
