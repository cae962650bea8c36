"""Flower glue: the ClientApp and ServerApp, the capturing strategies (plain and SecAgg+), the protocol
both sides share (``protocol``), the run config (``settings``), the in-process simulation and the
deployment's command lines.

Entry points: ``fedsyn.federation.simulation.federate(cell, out_dir)`` (simulation engine), and for
``flwr run`` the components ``fedsyn.sweep.flower_app:app`` (``server_app.run_federation``, then the
attack and the report) / ``fedsyn.federation.client_app:app``.
The client's work itself is Flower-free (``fedsyn.task``), and so is attacking a capture
(``fedsyn.evaluation``). Submodules are imported on demand: Flower and Ray are heavy.
"""
