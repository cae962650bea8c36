"""The federation: Flower ClientApp and ServerApp, the capturing strategy, the client's local training,
the capture format, the in-process simulation and the attack evaluator.

Entry points: ``fedsyn.federation.simulation.federate(cell, out_dir)`` (simulation engine),
``fedsyn.federation.evaluator.attack_capture(capture_dir)`` (attack and score), and for ``flwr run``
the components ``fedsyn.federation.server_app:app`` / ``fedsyn.federation.client_app:app``.
Submodules are imported on demand: Flower and Ray are heavy.
"""
