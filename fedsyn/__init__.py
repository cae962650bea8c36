"""fedsyn: a federated-learning privacy testbed for synaptic diversity against gradient inversion."""
