"""Messages: the long-lived workers post to the screens; commands and screens post to the app."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from pgq_console.core.models import OverviewSnapshot, RefreshStatus


@dataclass
class SnapshotReady(Message):
    snapshot: OverviewSnapshot

    def can_replace(self, message: Message) -> bool:
        # A newer snapshot makes a queued older one pointless.
        return isinstance(message, SnapshotReady)


@dataclass
class StatusChanged(Message):
    status: RefreshStatus

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, StatusChanged)


@dataclass
class PulseRead(Message):
    """The overview feed's slow reading (workers, failure groups): core/pulse.PulseReading."""

    reading: object


@dataclass
class AuditHeard(Message):
    """A write announced on the audit channel (core/audit.AuditAnnouncement), by any console."""

    announcement: object


@dataclass
class OpenJobs(Message):
    """Enter on the overview: the Jobs screen, filtered to exactly this entrypoint."""

    entrypoint: str


@dataclass
class SwitchProfile(Message):
    """`:db NAME` (or the palette): connect to another configured profile. The app handles it;
    commands and screens never call into the app class."""

    name: str
