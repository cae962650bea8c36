"""Attack a capture and score it: the capture format (``capture``), what each attacker knows
(``knowledge``) and the evaluator that runs the attack methods and builds the result rows
(``evaluator.attack_capture``). Free of Flower: attacks run on old captures, in another process or on a
Ray worker.
"""
