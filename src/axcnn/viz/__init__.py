"""Figures (matplotlib, imported lazily) and, later, the Dash explorer."""
