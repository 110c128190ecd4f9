"""Raises on import, as a plugin with a missing dependency would."""

raise ImportError("rladder_broken needs the package 'nonexistent-dependency'")
