"""Results: the typed result row and its field list (``fields``) and the SQLite store (``store``).

The evaluator builds ``ResultRow``s, the sweep commits them to the store, and the report reads the store
only. docs/results.md is the row contract.
"""

from .fields import RESULT_FIELDS, SCORE_FIELDS, STATUSES, ResultRow
from .store import ResultStore, StoreError, open_store

__all__ = ["RESULT_FIELDS", "SCORE_FIELDS", "STATUSES", "ResultRow", "ResultStore", "StoreError", "open_store"]
