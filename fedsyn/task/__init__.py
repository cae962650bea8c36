"""A client's work, free of Flower: the cell's model as each party builds it (``model``), the client's
data and partition (``data``) and its local training in one round (``training``).

Everything here is a pure function of the cell, the partition and the round, so the ClientApp, the
evaluator (which rebuilds a client's true batch) and the tests compute the same tensors.
"""
