"""Click command groups of the ``ocrtune`` CLI, one module per group, thin over the library."""
