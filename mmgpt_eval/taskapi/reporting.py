"""Task-specific views in the HTML report (placeholder: filled in by the report restructuring)."""

from __future__ import annotations


class ReportHooks:
    """Hooks the report calls on a task; the defaults add nothing."""
