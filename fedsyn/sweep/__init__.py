"""Orchestration: the resumable sweep runner, one process per cell, Ray, the pretraining cache, the
quickstart and the one-shot run of a real deployment (``deployed``)."""
