//! The page's controller: the links, the pure model, and the signals the view reads.
//!
//! A non-reactive [`Controller`] owns the links and the pure model; it writes what the page
//! shows into a few signals ([`Ui`]). Components (`crate::view`) read those signals and call
//! the controller on user actions, so no component ever touches a socket.
//!
//! Each signal is written only when what it shows changes, and holds no more than that: a
//! byte received updates one transport's [`Counters`] (three numbers), while the latency
//! samples are copied into the view only after an echo adds one.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use leptos::prelude::*;
use leptos::task::spawn_local;
use protocol::presence::{TYPING_EVERY_MS, TYPING_SHOWN_MS};
use protocol::{ClientFrame, Member, PublishRequest, Transport};

use crate::api;
use crate::browser;
use crate::model::{
    Counters, EchoTracker, Entry, Inbound, LatencySnapshot, LinkState, Links, Outbox, Pending,
    Roster, Timeline, TransportStats,
};
use crate::transport::{Link, LinkContext, LinkEvent};

/// Lines kept in the list; older ones scroll away for good (the relay keeps the history).
const MAX_SHOWN: usize = 500;
const DEFAULT_POLL_INTERVAL_MS: u32 = 1000;

/// What the page shows, written by the controller.
#[derive(Clone, Copy)]
pub struct Ui {
    pub entries: RwSignal<Vec<Entry>>,
    pub status: RwSignal<String>,
    /// The transport panel's rows, one per transport used in this session, in order of first
    /// use. The list changes only when a transport is first used; the figures change inside
    /// each row.
    pub stats: RwSignal<Vec<StatsRow>>,
    pub form_error: RwSignal<Option<String>>,
    /// Texts sent but not yet confirmed by the relay, shown as pending after the messages.
    pub pending: RwSignal<Vec<Pending>>,
    pub transport: RwSignal<Transport>,
    pub name: RwSignal<String>,
    /// Who is here (`#presence`), and how many (the header).
    pub members: RwSignal<Vec<Member>>,
    pub count: RwSignal<u64>,
    /// This tab's own public id, to mark itself in the list.
    pub you: RwSignal<Option<String>>,
    /// "Ana is typing…" (`#typing`), or nothing.
    pub typing: RwSignal<String>,

    /// A row for every transport, made with the page (so the page's owner releases their
    /// signals) and listed in `stats` from its transport's first use on.
    rows: [StatsRow; Transport::ALL.len()],
}

impl Ui {
    /// The signals of a page that starts on `transport` under `name`.
    pub fn new(transport: Transport, name: String) -> Ui {
        Ui {
            entries: RwSignal::new(Vec::new()),
            status: RwSignal::new("connecting…".to_owned()),
            stats: RwSignal::new(Vec::new()),
            form_error: RwSignal::new(None),
            pending: RwSignal::new(Vec::new()),
            transport: RwSignal::new(transport),
            name: RwSignal::new(name),
            members: RwSignal::new(Vec::new()),
            count: RwSignal::new(0),
            you: RwSignal::new(None),
            typing: RwSignal::new(String::new()),
            rows: Transport::ALL.map(StatsRow::new),
        }
    }

    fn row(&self, transport: Transport) -> Option<StatsRow> {
        self.rows.into_iter().find(|row| row.transport == transport)
    }
}

/// One row of the transport panel. Its two signals change at their own pace, so a component
/// that reads one is never woken by the other: the chart reads only `latency`.
#[derive(Clone, Copy)]
pub struct StatsRow {
    pub transport: Transport,
    /// Requests, bytes and reconnects: updated on every event of this transport.
    pub counters: RwSignal<Counters>,
    /// The latency figures and the chart's samples: updated when an echo is measured.
    pub latency: RwSignal<LatencySnapshot>,
}

impl StatsRow {
    fn new(transport: Transport) -> StatsRow {
        StatsRow {
            transport,
            counters: RwSignal::new(Counters::default()),
            latency: RwSignal::new(LatencySnapshot::default()),
        }
    }
}

pub struct Controller {
    room: String,
    /// This tab's client id: one member of the room on every transport.
    client: String,
    roster: Roster,
    /// When this page last told the room its user was typing (`now_ms`), since the last send.
    typed_at: Option<f64>,
    timeline: Timeline,
    links: Links,
    open: HashMap<u32, OpenLink>,
    echo: EchoTracker,
    outbox: Outbox,
    /// A `POST` of the outbox's oldest text is under way (or waiting to be retried).
    posting: bool,
    /// A resend of what is pending is scheduled (one at a time, however many refusals).
    resend_scheduled: bool,
    /// One entry per transport used in this session, in order of first use.
    stats: Vec<TransportStats>,
    poll_interval_ms: Rc<Cell<u32>>,
    ui: Ui,
    this: Weak<RefCell<Controller>>,
}

struct OpenLink {
    link: Link,
    transport: Transport,
    /// The history this link's events belong to, from its welcome.
    epoch: Option<String>,
}

/// The controller as the page holds it: links call back through a weak reference to it.
pub type Shared = Rc<RefCell<Controller>>;

impl Controller {
    pub fn new(room: String, ui: Ui) -> Shared {
        Rc::new_cyclic(|this| {
            RefCell::new(Controller {
                room,
                client: browser::client_id(),
                roster: Roster::default(),
                typed_at: None,
                timeline: Timeline::default(),
                links: Links::default(),
                open: HashMap::new(),
                echo: EchoTracker::default(),
                outbox: Outbox::default(),
                posting: false,
                resend_scheduled: false,
                stats: Vec::new(),
                poll_interval_ms: Rc::new(Cell::new(DEFAULT_POLL_INTERVAL_MS)),
                ui,
                this: this.clone(),
            })
        })
    }

    /// Opens a link over `transport` from where the page stands; the previous one is closed
    /// once the new one is live (make-before-break).
    pub fn switch_to(&mut self, transport: Transport) {
        let (id, close) = self.links.open(transport);
        self.close(close);
        let timeline = self.this.clone();
        let events = self.this.clone();
        let ctx = LinkContext {
            id,
            transport,
            room: self.room.clone(),
            name: self.ui.name.get_untracked(),
            client: self.client.clone(),
            cursor: Rc::new(move || {
                timeline
                    .upgrade()
                    .map(|c| c.borrow().timeline.cursor())
                    .unwrap_or_default()
            }),
            poll_interval_ms: self.poll_interval_ms.clone(),
            emit: Rc::new(move |id, event| {
                if let Some(controller) = events.upgrade() {
                    controller.borrow_mut().handle(id, event);
                }
            }),
        };
        let link = Link::open(ctx);
        self.open.insert(
            id,
            OpenLink {
                link,
                transport,
                epoch: None,
            },
        );
        self.stats_mut(transport);
        self.ui.transport.set(transport);
        browser::write_url(&self.room, transport, &self.ui.name.get_untracked());
        self.publish_status();
    }

    /// The pause between short polls, read by every short-polling link before its next
    /// request.
    pub fn set_poll_interval(&self, ms: u32) {
        self.poll_interval_ms.set(ms);
    }

    fn close(&mut self, ids: Vec<u32>) {
        for id in ids {
            // Dropping the link releases its socket, EventSource, fetch and timers.
            self.open.remove(&id);
        }
    }

    fn stats_mut(&mut self, transport: Transport) -> &mut TransportStats {
        let index = match self.stats.iter().position(|s| s.transport == transport) {
            Some(index) => index,
            None => {
                self.stats.push(TransportStats::new(transport));
                // The panel lists a transport from its first use on; its row starts at zero,
                // as the new entry does.
                if let Some(row) = self.ui.row(transport) {
                    self.ui.stats.update(|rows| rows.push(row));
                }
                self.stats.len() - 1
            }
        };
        &mut self.stats[index]
    }

    /// Changes one transport's counters and shows the result. Only that row's counter cells
    /// are told (and not at all if nothing changed, e.g. an empty event): the latency figures
    /// and the chart do not depend on them.
    fn count(&mut self, transport: Transport, change: impl FnOnce(&mut TransportStats)) {
        let stats = self.stats_mut(transport);
        change(stats);
        let counters = stats.counters();
        if let Some(row) = self.ui.row(transport)
            && row.counters.with_untracked(|shown| *shown != counters)
        {
            row.counters.set(counters);
        }
    }

    /// Shows one transport's latencies after an echo was measured on it: the only moment they
    /// change, so the samples are copied once per echo rather than once per event.
    fn publish_latency(&mut self, transport: Transport) {
        let snapshot = self.stats_mut(transport).latency.snapshot();
        if let Some(row) = self.ui.row(transport) {
            row.latency.set(snapshot);
        }
    }

    fn handle(&mut self, id: u32, event: LinkEvent) {
        let Some(transport) = self.open.get(&id).map(|l| l.transport) else {
            return; // the last words of a link that was just closed
        };
        match event {
            LinkEvent::Attempt => {
                self.count(transport, |s| s.requests += 1);
                if let Some((current, _, LinkState::Retrying(_))) = self.links.current()
                    && current == id
                {
                    self.links.set_state(id, LinkState::Connecting);
                }
            }
            LinkEvent::Bytes(n) => self.count(transport, |s| s.bytes += n as u64),
            LinkEvent::Lost { wait } => {
                self.count(transport, |s| s.reconnects += 1);
                let close = self.links.set_state(id, LinkState::Retrying(wait));
                self.close(close);
            }
            LinkEvent::Refused(error) => {
                // The error names the send it is about (by key). A text the relay will never
                // take leaves the outbox; one that may pass later is sent again once the
                // relay's advice has passed.
                if let Some(key) = &error.key {
                    if api::is_final(error.code) {
                        self.outbox.refused(key);
                        self.publish_pending();
                    } else {
                        let ms = error.retry_after_ms.unwrap_or(api::RESEND_MS);
                        self.schedule_resend(ms);
                    }
                }
                self.ui.form_error.set(Some(api::describe(&error)));
            }
            LinkEvent::Acked(key) => self.confirm(&key),
            LinkEvent::Presence(change) => {
                self.roster.change(change);
                self.publish_roster();
            }
            LinkEvent::Typing(typing) => {
                if self.roster.typing(typing, browser::now_ms()) {
                    self.publish_typing();
                    self.expire_typing_later();
                }
            }
            LinkEvent::Inbound(inbound) => self.inbound(id, transport, inbound),
        }
        self.publish_status();
    }

    fn inbound(&mut self, id: u32, transport: Transport, inbound: Inbound) {
        let mut added = Vec::new();
        if let Inbound::Welcome(welcome) = &inbound
            && let Some(presence) = &welcome.presence
        {
            self.roster.snapshot(presence.clone());
            self.publish_roster();
        }
        if let Inbound::Welcome(welcome) = &inbound {
            if let Some(link) = self.open.get_mut(&id) {
                link.epoch = Some(welcome.epoch.clone());
            }
            let close = self.links.set_state(id, LinkState::Live);
            self.close(close);
            if self.links.is_current(id) {
                self.resend_pending();
            }
        }
        let Some(epoch) = self.open.get(&id).and_then(|l| l.epoch.clone()) else {
            return;
        };
        let welcome = matches!(inbound, Inbound::Welcome(_));
        added.extend(self.timeline.apply(&epoch, inbound));
        if welcome && self.links.is_current(id) {
            let text = format!("connection established ({})", transport.label());
            added.push(self.timeline.notice(text, false));
        }
        let me = self.ui.name.get_untracked();
        let now = browser::now_ms();
        // Whoever's message arrived is done typing it.
        let mut typed = false;
        for entry in &added {
            if let Entry::Message { message, .. } = entry {
                typed |= self.roster.message_from(&message.from);
            }
        }
        if typed {
            self.publish_typing();
        }
        let mut echoed = false;
        let mut confirmed = false;
        for entry in &added {
            if let Entry::Message { message, .. } = entry
                && let Some(key) = &message.key
            {
                confirmed |= self.outbox.confirmed(key);
            }
        }
        if confirmed {
            self.publish_pending();
        }
        for entry in &added {
            if let Entry::Message { message, .. } = entry
                && let Some(ms) = self.echo.echoed(message, &me, now)
            {
                self.stats_mut(transport).latency.record(ms);
                echoed = true;
            }
        }
        if echoed {
            self.publish_latency(transport);
        }
        if !added.is_empty() {
            self.ui.entries.update(|entries| {
                entries.extend(added);
                let excess = entries.len().saturating_sub(MAX_SHOWN);
                entries.drain(..excess);
            });
        }
    }

    /// Writes the status line. Called after every link event and on `online`/`offline`; most
    /// events (bytes, attempts) leave the line as it was, and then nothing is redrawn.
    pub fn publish_status(&self) {
        let status = if !browser::online() {
            "offline".to_owned()
        } else {
            match self.links.current() {
                None => "offline".to_owned(),
                Some((_, _, LinkState::Connecting)) => "connecting…".to_owned(),
                Some((_, transport, LinkState::Live)) => {
                    format!("connected via {}", transport.label())
                }
                Some((_, _, LinkState::Retrying(wait))) => wait.why.status(wait.ms),
            }
        };
        if self.ui.status.with_untracked(|shown| *shown != status) {
            self.ui.status.set(status);
        }
    }

    fn publish_roster(&self) {
        self.ui.members.set(self.roster.members().to_vec());
        self.ui.count.set(self.roster.count());
        let you = self.roster.you().map(str::to_owned);
        if self.ui.you.with_untracked(|shown| *shown != you) {
            self.ui.you.set(you);
        }
    }

    fn publish_typing(&self) {
        let line = self.roster.typing_line();
        if self.ui.typing.with_untracked(|shown| *shown != line) {
            self.ui.typing.set(line);
        }
    }

    /// Clears typing that has been shown long enough, once it has.
    fn expire_typing_later(&self) {
        let this = self.this.clone();
        spawn_local(async move {
            gloo_timers::future::TimeoutFuture::new(TYPING_SHOWN_MS as u32 + 50).await;
            if let Some(controller) = this.upgrade() {
                let mut controller = controller.borrow_mut();
                if controller.roster.expire(browser::now_ms()) {
                    controller.publish_typing();
                }
            }
        });
    }

    /// The user typed in the message field: the room hears of it at most every
    /// `TYPING_EVERY_MS` (the relay drops more), over the WebSocket when that is the live
    /// transport, else with `POST …/typing`.
    pub fn typing(&mut self) {
        let now = browser::now_ms();
        if self
            .typed_at
            .is_some_and(|at| now - at < TYPING_EVERY_MS as f64)
        {
            return;
        }
        self.typed_at = Some(now);
        if let Some((id, Transport::Ws | Transport::WebTransport, LinkState::Live)) =
            self.links.current()
            && let Some(link) = self.open.get(&id)
            && link.link.send(crate::json::frame(&ClientFrame::Typing))
        {
            return;
        }
        let (room, client) = (self.room.clone(), self.client.clone());
        spawn_local(async move { api::typing(&room, &client).await });
    }

    /// The page is going away: the room is told now, not after the relay's grace.
    pub fn leave(&self) {
        api::leave(&self.room, &self.client);
    }

    /// Sends a text: it waits in the outbox, shown as pending, until the relay confirms it.
    pub fn send(&mut self, text: String) {
        // Sent: no longer typing (the others clear the line when the message arrives).
        self.typed_at = None;
        let now = browser::now_ms();
        self.echo.sent(&text, now);
        let pending = self.outbox.add(text, browser::random_key(), now);
        self.publish_pending();
        self.transmit(pending);
    }

    /// Sends (again) one pending text, under its key: over the WebSocket or WebTransport
    /// stream when that is the live transport, else with `POST`. A repeat of a key the relay stored is not stored
    /// again, so sending whenever the fate of a text is unknown is safe.
    fn transmit(&mut self, pending: Pending) {
        if let Some((id, Transport::Ws | Transport::WebTransport, LinkState::Live)) =
            self.links.current()
        {
            let frame = crate::json::frame(&ClientFrame::Send {
                text: pending.text,
                key: Some(pending.key),
            });
            if let Some(link) = self.open.get(&id)
                && link.link.send(frame)
            {
                // Confirmed by its message or its ack; if the socket drops first, the next
                // welcome sends it again.
                return;
            }
        }
        self.post_next();
    }

    /// `POST`s the oldest pending text, one at a time, so that texts sent while the relay
    /// was away are stored in the order they were written. A refusal that passes is tried
    /// again after the relay's advice (or a second); one about the text drops it.
    fn post_next(&mut self) {
        if self.posting {
            return;
        }
        let now = browser::now_ms();
        self.give_up(now);
        let Some(pending) = self.outbox.pending().first().cloned() else {
            return;
        };
        self.posting = true;
        let room = self.room.clone();
        let request = PublishRequest {
            from: self.ui.name.get_untracked(),
            text: pending.text,
            client: Some(self.client.clone()),
        };
        let key = pending.key;
        let this = self.this.clone();
        spawn_local(async move {
            let result = api::publish(&room, &request, &key).await;
            if let Err(api::NotSent {
                retry_ms: Some(ms),
                message,
            }) = &result
            {
                // Still pending, tried again after the advice; the user sees why it waits.
                if let Some(controller) = this.upgrade() {
                    controller.borrow().ui.form_error.set(Some(message.clone()));
                }
                gloo_timers::future::TimeoutFuture::new(*ms as u32).await;
            }
            let Some(controller) = this.upgrade() else {
                return;
            };
            let mut controller = controller.borrow_mut();
            controller.posting = false;
            match result {
                Ok(id) => {
                    controller.echo.acknowledged(&request.text, id);
                    controller.confirm(&key);
                }
                Err(api::NotSent {
                    retry_ms: Some(_), ..
                }) => {}
                Err(not_sent) => {
                    controller.outbox.refused(&key);
                    controller.publish_pending();
                    controller.ui.form_error.set(Some(not_sent.message));
                }
            }
            // What is left goes on the best way there is now (the WebSocket may be back).
            if let Some(next) = controller.outbox.pending().first().cloned() {
                controller.transmit(next);
            }
        });
    }

    /// Sends what is pending again after `ms`: one timer at a time, however many refusals
    /// asked for it, so that resends cannot multiply.
    fn schedule_resend(&mut self, ms: u64) {
        if self.resend_scheduled {
            return;
        }
        self.resend_scheduled = true;
        let this = self.this.clone();
        spawn_local(async move {
            gloo_timers::future::TimeoutFuture::new(ms as u32).await;
            if let Some(controller) = this.upgrade() {
                let mut controller = controller.borrow_mut();
                controller.resend_scheduled = false;
                controller.resend_pending();
            }
        });
    }

    /// A link became live: everything still pending goes again (the relay may have stored
    /// some of it before the connection dropped; those are not stored twice).
    fn resend_pending(&mut self) {
        self.give_up(browser::now_ms());
        for pending in self.outbox.pending().to_vec() {
            self.transmit(pending);
        }
    }

    /// Drops texts tried for too long, telling the user.
    fn give_up(&mut self, now: f64) {
        let expired = self.outbox.expire(now);
        if !expired.is_empty() {
            self.publish_pending();
            self.ui.form_error.set(Some(format!(
                "{} message(s) could not be sent; please send them again",
                expired.len()
            )));
        }
    }

    /// The relay stored `key`. Once nothing is pending, a refusal shown earlier is over.
    fn confirm(&mut self, key: &str) {
        if self.outbox.confirmed(key) {
            self.publish_pending();
            if self.outbox.pending().is_empty() {
                self.ui.form_error.set(None);
            }
        }
    }

    fn publish_pending(&self) {
        self.ui.pending.set(self.outbox.pending().to_vec());
    }

    pub fn shutdown(&mut self) {
        let ids = self.links.close_all();
        self.close(ids);
    }
}
