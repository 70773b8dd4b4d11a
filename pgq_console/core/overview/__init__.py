"""The overview's live model: the refresh loop (refresher), what it reads tier by tier (tiers),
and the database budget that paces both (pacing)."""

from pgq_console.core.overview.pacing import Pacer
from pgq_console.core.overview.refresher import Refresher

__all__ = ["Pacer", "Refresher"]
