"""Translations of the neutral model (:class:`RowBuffer`) to each solver; imported lazily."""
