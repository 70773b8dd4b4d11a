"""One job: its fields, headers, payload (JSON, text or hex; paged) and its log history.

Everything from the database is untrusted and shown as literal Text through `printable`.

The detail is read once (and again after a write or `m`); it does not poll. When the console
learns that the connection is lost (its LISTEN connection closed, or a read of this screen
failed) it reads the job again: a failed read shows the outage line every screen shows, with
the ages frozen at the last good read, and is retried every `DETAIL_RETRY_S`.

`open_job_detail` (enter on a list) reads the job first and shows the screen with it: one
composition and one frame of the job, not a "Loading…" frame, a second layout and the read's
message in between (on a busy console each of those waits its turn on the event loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Static

from pgq_console.core import actions
from pgq_console.core.actions import Action, ids_predicate
from pgq_console.core.backend import Backend
from pgq_console.core.clock import Clock
from pgq_console.core.errors import ConsoleError
from pgq_console.core.jobs import PAYLOAD_PAGE_BYTES, JobDetail, fetch_detail, render_payload
from pgq_console.core.refresh_loop import describe_outage, describe_refresh_error
from pgq_console.core.text import clipboard_text, one_line, printable
from pgq_console.screens.action_confirm import confirm_write
from pgq_console.screens.gating import ReadOnlyGate
from pgq_console.widgets import format as fmt
from pgq_console.widgets.banner import Banner
from pgq_console.widgets.footer import ConsoleFooter

WRITE_ACTIONS = frozenset({"requeue", "cancel", "copy_job"})
# `m` grows the shown payload 4x at a time up to this: more would freeze the screen's layout.
MAX_SHOWN_PAYLOAD_BYTES = 256 * 1024
# How often the detail is read again while the connection is lost.
DETAIL_RETRY_S = 5.0
# How long `open_job_detail` waits for the job's row before showing the screen without it (the
# screen then shows "Loading…" and takes over the read under way).
OPEN_WAIT_S = 0.15


@dataclass
class DetailLoaded(Message):
    detail: JobDetail | None
    error: str | None = None
    lost: bool = False  # `error` is the outage line: the connection is lost


class JobDetailScreen(ReadOnlyGate, Screen[None]):
    WRITE_ACTIONS = WRITE_ACTIONS
    BINDINGS = [
        Binding("escape", "back", "Back", id="job-detail.back"),
        Binding("t", "toggle_tz", "UTC/local", id="job-detail.toggle-tz"),
        Binding("m", "more_payload", "More payload", id="job-detail.more-payload"),
        Binding("r", "requeue", "Requeue", id="job-detail.requeue"),
        Binding("c", "cancel", "Cancel", id="job-detail.cancel"),
        Binding("E", "copy_job", "Copy", id="job-detail.copy-job"),
        Binding("y", "yank_id", "Copy id", id="job-detail.yank-id"),
        Binding("Y", "yank_payload", "Copy payload", id="job-detail.yank-payload"),
        Binding("w", "why", "Why not running?", show=False, id="detail.why"),
    ]

    def __init__(
        self,
        backend: Backend,
        clock: Clock,
        job_id: int,
        *,
        detail: JobDetail | None = None,
        reading: asyncio.Future[JobDetail] | None = None,
    ) -> None:
        """`detail`: the job, read already (`open_job_detail`): composed with it, no read at
        mount. `reading`: its read under way (or failed): the screen's first load awaits it."""
        super().__init__()
        self.backend = backend
        self.clock = clock
        self.job_id = job_id
        self.detail: JobDetail | None = detail
        self._reading = reading
        self.utc = True
        self.payload_bytes = PAYLOAD_PAGE_BYTES
        # When the shown detail was read; while the connection is lost, since when and how
        # many reads failed (the ages shown are then those of `read_at`).
        self.read_at: datetime | None = clock.now() if detail is not None else None
        self.lost_since: datetime | None = None
        self.failures = 0
        self._listening = backend.listener_alive()  # the LISTEN connection, at the last look
        self._reading_again = False  # a read is under way because the LISTEN connection closed

    def compose(self) -> ComposeResult:
        texts = self._texts() if self.detail is not None else {}
        yield Banner(id="detail-banner")
        with VerticalScroll(id="detail-scroll"):
            title = texts.get("detail-title", Text(f"Job {self.job_id}", style="bold"))
            yield Static(title, id="detail-title")
            yield Static(texts.get("detail-fields", Text("Loading…")), id="detail-fields")
            yield Static(Text("Headers", style="bold"), classes="detail-heading")
            yield Static(texts.get("detail-headers", Text("")), id="detail-headers")
            yield Static(Text("Payload", style="bold"), classes="detail-heading")
            yield Static(texts.get("detail-payload", Text("")), id="detail-payload")
            yield Static(Text("History", style="bold"), classes="detail-heading")
            yield Static(texts.get("detail-history", Text("")), id="detail-history")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        self.query_one("#detail-banner", Banner).hide()
        self.query_one("#detail-scroll").focus()
        if self.detail is None:  # else composed with it (`open_job_detail`)
            self.load()
        self.set_interval(1.0, self._tick)

    def on_unmount(self) -> None:
        if self._reading is not None:  # closed before its first load took the read over
            self._reading.cancel()

    @work(group="detail", exclusive=True, exit_on_error=False)
    async def load(self) -> None:
        reading, self._reading = self._reading, None
        try:
            if reading is not None:  # the read `open_job_detail` began
                detail = await reading
            else:
                detail = await fetch_detail(
                    self.backend, self.job_id, payload_bytes=self.payload_bytes
                )
        except ConsoleError as exc:
            self.post_message(DetailLoaded(None, str(exc)))
            return
        except Exception as exc:
            if self.backend.errors.connection_lost(exc):
                # Said as every screen says it; read again until the server is back.
                now = self.clock.now()
                self.lost_since = self.lost_since or now
                self.failures += 1
                line = describe_outage(
                    exc,
                    self.backend.label,
                    self.lost_since,
                    self.read_at,
                    now + timedelta(seconds=DETAIL_RETRY_S),
                    self.failures,
                    listens=False,
                )
                self.post_message(DetailLoaded(None, line, lost=True))
                self.set_timer(DETAIL_RETRY_S, self.load)
            else:
                message = describe_refresh_error(exc, self.backend)
                self.post_message(DetailLoaded(None, f"cannot read job {self.job_id}: {message}"))
            return
        self.post_message(DetailLoaded(detail))

    @on(DetailLoaded)
    def show(self, message: DetailLoaded) -> None:
        self._reading_again = False
        banner = self.query_one("#detail-banner", Banner)
        if message.lost:
            banner.show(f"⚠ {printable(one_line(message.error or ''))}", variant="error")
            if self.detail is None:
                self.query_one("#detail-fields", Static).update(
                    Text(f"job {self.job_id} not read yet: the connection is lost", style="bold")
                )
            else:
                self._show_detail()  # its ages as of `read_at`
            return
        if message.error:
            banner.hide()
            self.query_one("#detail-fields", Static).update(
                Text(printable(one_line(message.error)), style="bold")
            )
            return
        self.lost_since, self.failures = None, 0
        self.read_at = self.clock.now()
        banner.hide()
        self.detail = message.detail
        self._show_detail()

    def _now(self) -> datetime:
        """The time the ages are counted to: now, or while the connection is lost the time of
        the last good read (the ages do not move on as if the job were watched live)."""
        if self.lost_since is not None and self.read_at is not None:
            return self.read_at
        return self.clock.now()

    def _when(self, value: datetime | None) -> str:
        if value is None:
            return "–"
        now = self._now()
        shown = value.astimezone(UTC) if self.utc else value.astimezone()
        delta = (now - value).total_seconds()
        relative = f"{fmt.seconds(abs(delta))} ago" if delta >= 0 else f"in {fmt.seconds(-delta)}"
        return f"{shown.isoformat(sep=' ', timespec='seconds')}  ({relative})"

    def _show_detail(self) -> None:
        if self.detail is None:
            return
        for widget_id, text in self._texts().items():
            self.query_one(f"#{widget_id}", Static).update(text)

    def _texts(self) -> dict[str, Text]:
        """What each Static of the screen shows for `detail`, by widget id."""
        detail = self.detail
        assert detail is not None
        job = detail.job
        texts: dict[str, Text] = {}
        if job is None:
            texts["detail-title"] = Text.assemble(
                (f"Job {detail.job_id}", "bold"),
                "  ",
                printable(detail.entrypoint, limit=80),
                ("  no longer in the queue (finished or removed); its log follows", "italic"),
            )
            texts["detail-fields"] = Text("")
            texts["detail-headers"] = Text("–")
            texts["detail-payload"] = Text("– (the log keeps no payload)")
        else:
            texts["detail-title"] = Text.assemble(
                (f"Job {job.id}", "bold"), "  ", printable(job.entrypoint, limit=80)
            )
            texts["detail-fields"] = self._fields_text()
            headers = detail.headers
            texts["detail-headers"] = (
                Text(printable_block(pretty_json(headers))) if headers else Text("–")
            )
            rendered = render_payload(detail.payload, truncated=detail.payload_truncated)
            label = f"[{rendered.kind}, {detail.payload_total} bytes"
            if detail.payload_truncated and detail.payload is not None:
                label += f", first {len(detail.payload)} shown: m loads more"
            label += "]\n"
            texts["detail-payload"] = Text.assemble((label, "dim"), printable_block(rendered.text))
        texts["detail-history"] = self._history()
        return texts

    def _fields_text(self) -> Text:
        job = self.detail.job if self.detail else None
        if job is None:
            return Text("")
        return _field_lines(
            [
                ("entrypoint", printable(job.entrypoint)),
                ("status", job.status),
                ("priority", str(job.priority)),
                ("attempts", str(job.attempts)),
                ("dedupe key", printable(job.dedupe_key) if job.dedupe_key else "–"),
                ("queue manager", job.queue_manager_id or "–"),
                ("created", self._when(job.created)),
                ("updated", self._when(job.updated)),
                ("heartbeat", self._when(job.heartbeat)),
                ("execute after", self._when(job.execute_after)),
                ("times", self._times_note()),
            ]
        )

    def _times_note(self) -> str:
        note = "UTC (t: local)" if self.utc else "local (t: UTC)"
        if self.lost_since is not None and self.read_at is not None:
            read_at = self.read_at if self.utc else self.read_at.astimezone()
            note += f"; ages as of {read_at:%H:%M:%S}, the last read (not current)"
        return note

    def _tick(self) -> None:
        """Relative times ("5m00s ago") move on while the detail is shown; no database read.

        A LISTEN connection that closed since the last look says the console may have lost
        the server: the job is read once again (a failed read shows the outage and retries)."""
        listening, self._listening = self._listening, self.backend.listener_alive()
        dropped = listening and not self._listening and self.lost_since is None
        if dropped and self.detail is not None and not self._reading_again:
            self._reading_again = True
            self.query_one("#detail-banner", Banner).show(
                f"⚠ the LISTEN connection to {self.backend.label} closed at "
                f"{self.clock.now():%H:%M:%S}: reading job {self.job_id} again",
                variant="warning",
            )
            self.load()
        if self.detail is None or not self.is_current or self.lost_since is not None:
            return
        if self.detail.job is not None:
            self.query_one("#detail-fields", Static).update(self._fields_text())
        self.query_one("#detail-history", Static).update(self._history())

    def _history(self) -> Text:
        detail = self.detail
        if detail is None or not detail.history:
            return Text("no log rows")
        text = Text()
        for entry in detail.history:
            text.append(f"{self._when(entry.created)}  ", style="dim")
            text.append(
                f"{entry.status:<10}",
                style="bold" if entry.status in ("exception", "failed") else "",
            )
            text.append(f" prio {entry.priority}\n")
            record = entry.traceback
            if record:
                kind = str(record.get("exception_type", ""))
                message = str(record.get("exception_message", ""))
                text.append(printable(f"  {kind}: {message}", limit=500) + "\n", style="bold")
                trace = str(record.get("traceback") or "")
                if trace:
                    for line in trace.splitlines()[-40:]:
                        text.append("    " + printable(line) + "\n")
                context = record.get("additional_context")
                if context:
                    text.append(
                        "  " + printable(pretty_json(context, indent=None), limit=500) + "\n",
                        style="dim",
                    )
        return text

    def palette_commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        commands: list[tuple[str, str, Callable[[], object]]] = [
            ("Copy job id", "OSC 52 (y)", self.action_yank_id),
            ("Copy job payload", "OSC 52 (Y)", self.action_yank_payload),
            ("Toggle UTC / local time", "(t)", self.action_toggle_tz),
            ("Load more payload", "(m)", self.action_more_payload),
            ("Why isn't it running?", "every reason that applies (w)", self.action_why),
        ]
        if not self.backend.read_only:
            commands += [
                ("Requeue this job", "a held failure (r)", self.action_requeue),
                ("Cancel this job", "queued or picked (c)", self.action_cancel),
                ("Enqueue a copy of this job", "(E)", self.action_copy_job),
            ]
        return commands

    def action_back(self) -> None:
        self.dismiss(None)

    def action_why(self) -> None:
        from pgq_console.screens.why import WhyScreen

        self.app.push_screen(WhyScreen(self.backend, job_id=self.job_id))

    def action_toggle_tz(self) -> None:
        self.utc = not self.utc
        self._show_detail()

    def action_more_payload(self) -> None:
        if not (self.detail and self.detail.payload_truncated):
            return
        if self.payload_bytes >= MAX_SHOWN_PAYLOAD_BYTES:
            self.notify(
                f"showing the first {MAX_SHOWN_PAYLOAD_BYTES // 1024} KiB of "
                f"{self.detail.payload_total:,} bytes: the most this screen shows",
                severity="warning",
                markup=False,
            )
            return
        self.payload_bytes = min(self.payload_bytes * 4, MAX_SHOWN_PAYLOAD_BYTES)
        self.load()

    def action_yank_id(self) -> None:
        self.app.copy_to_clipboard(str(self.job_id))
        self.notify(f"copied job id {self.job_id}", markup=False)

    def action_yank_payload(self) -> None:
        detail = self.detail
        if detail is None or detail.payload is None:
            self.notify("no payload to copy", severity="warning", markup=False)
            return
        rendered = render_payload(detail.payload, truncated=detail.payload_truncated)
        # The clipboard gets text, never terminal controls (they would run where it is pasted).
        self.app.copy_to_clipboard(clipboard_text(rendered.text))
        if detail.payload_truncated:
            self.notify(
                f"copied the first {len(detail.payload):,} of {detail.payload_total:,} bytes "
                f"({rendered.kind}; m loads more)",
                severity="warning",
                markup=False,
            )
        else:
            self.notify(f"copied the payload ({rendered.kind})", markup=False)

    def _open(self, action: Action) -> None:
        confirm_write(self, self.backend, action, lambda _result: self.load())

    def action_requeue(self) -> None:
        self._open(actions.requeue(self.backend, ids_predicate([self.job_id])))

    def action_cancel(self) -> None:
        self._open(actions.cancel(self.backend, ids_predicate([self.job_id])))

    def action_copy_job(self) -> None:
        # Its payload size as this screen read it (unknown: treated as having one), so a job
        # that finished meanwhile is copied from its log row only if it had none.
        detail = self.detail
        job = detail.job if detail else None
        seen = {self.job_id: job.payload_bytes if job is not None else 1}
        known: dict[int, tuple[bytes | None, str | None]] = {}
        if detail is not None and job is not None and not detail.payload_truncated:
            headers = detail.headers
            clean = headers is None or not ({"(unparseable)", "(value)"} & headers.keys())
            if clean:  # what this screen read whole: a finished job is copied with it
                text = None if headers is None else json.dumps(headers, ensure_ascii=False)
                known[self.job_id] = (detail.payload, text)
        self._open(actions.copy_jobs(self.backend, seen, known))


def open_job_detail(
    screen: Screen[None],
    backend: Backend,
    clock: Clock,
    job_id: int,
    on_close: Callable[[None], None],
) -> None:
    """Show job `job_id`'s detail over `screen` (enter on a list), read before it is shown.

    The read gets `OPEN_WAIT_S`; a slower (or failed) one does not hold the screen back: it is
    shown with "Loading…" and takes the read over (its error said as its own reads say it).
    Keys pressed meanwhile still go to `screen`; a second enter replaces the first; a screen no
    longer shown when the read lands (another screen was switched to) opens nothing.
    """
    screen.run_worker(
        _read_then_show(screen, backend, clock, job_id, on_close),
        group="open-job-detail",
        exclusive=True,
        exit_on_error=False,
    )


async def _read_then_show(
    screen: Screen[None],
    backend: Backend,
    clock: Clock,
    job_id: int,
    on_close: Callable[[None], None],
) -> None:
    reading = asyncio.ensure_future(fetch_detail(backend, job_id))
    try:
        await asyncio.wait({reading}, timeout=OPEN_WAIT_S)
    except asyncio.CancelledError:  # a second enter, or the screen closed
        reading.cancel()
        raise
    if not screen.is_current:
        reading.cancel()
        with contextlib.suppress(BaseException):
            await reading  # its exception, if any, is retrieved
        return
    if reading.done() and not reading.cancelled() and reading.exception() is None:
        detail = JobDetailScreen(backend, clock, job_id, detail=reading.result())
    else:
        detail = JobDetailScreen(backend, clock, job_id, reading=reading)
    screen.app.push_screen(detail, on_close)


def pretty_json(value: object, *, indent: int | None = 2) -> str:
    """JSON from the database, indented; nesting too deep for Python's stack is said so."""
    try:
        return json.dumps(value, indent=indent, ensure_ascii=False)
    except (RecursionError, ValueError, TypeError):
        return "(nested too deeply to show)"


def printable_block(text: str) -> str:
    """Multi-line untrusted text: each line made printable, the line breaks kept."""
    return "\n".join(printable(line) for line in text.split("\n"))


def _field_lines(rows: list[tuple[str, str]]) -> Text:
    text = Text()
    for name, value in rows:
        text.append(f"{name:<14}", style="dim")
        text.append(value + "\n")
    return text
