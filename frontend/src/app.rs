//! The page: the tutorial's chat, the transport toggle, the status line and the transport
//! panel.
//!
//! A non-reactive [`Controller`] owns the links and the pure model; it writes what the page
//! shows into a few signals ([`Ui`]). Components read those signals and call the controller on
//! user actions, so no component ever touches a socket.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use leptos::ev::SubmitEvent;
use leptos::html;
use leptos::prelude::*;
use leptos::task::spawn_local;
use protocol::{ClientFrame, ErrorBody, PublishRequest, PublishResponse, ServerEvent, Transport};
use send_wrapper::SendWrapper;

use crate::browser;
use crate::model::{
    EchoTracker, Entry, Inbound, LinkState, Links, Timeline, TransportStats, label, parse_transport,
};
use crate::transport::{Link, LinkContext, LinkEvent};

/// Lines kept in the list; older ones scroll away for good (the relay keeps the history).
const MAX_SHOWN: usize = 500;
/// Limits the relay enforces by default, checked here first for an immediate answer.
const MAX_TEXT_BYTES: usize = 4096;
const MAX_NAME_CHARS: usize = 32;
const DEFAULT_POLL_INTERVAL_MS: u32 = 1000;

/// What the page shows, written by the controller.
#[derive(Clone, Copy)]
struct Ui {
    entries: RwSignal<Vec<Entry>>,
    status: RwSignal<String>,
    stats: RwSignal<Vec<TransportStats>>,
    form_error: RwSignal<Option<String>>,
    transport: RwSignal<Transport>,
    name: RwSignal<String>,
}

struct Controller {
    room: String,
    timeline: Timeline,
    links: Links,
    open: HashMap<u32, OpenLink>,
    echo: EchoTracker,
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

type Shared = Rc<RefCell<Controller>>;

impl Controller {
    fn new(room: String, ui: Ui) -> Shared {
        Rc::new_cyclic(|this| {
            RefCell::new(Controller {
                room,
                timeline: Timeline::default(),
                links: Links::default(),
                open: HashMap::new(),
                echo: EchoTracker::default(),
                stats: Vec::new(),
                poll_interval_ms: Rc::new(Cell::new(DEFAULT_POLL_INTERVAL_MS)),
                ui,
                this: this.clone(),
            })
        })
    }

    /// Opens a link over `transport` from where the page stands; the previous one is closed
    /// once the new one is live (make-before-break).
    fn switch_to(&mut self, transport: Transport) {
        let (id, close) = self.links.open(transport);
        self.close(close);
        let timeline = self.this.clone();
        let events = self.this.clone();
        let ctx = LinkContext {
            id,
            transport,
            room: self.room.clone(),
            name: self.ui.name.get_untracked(),
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
        browser::write_url(&self.room, transport);
        self.publish_state();
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
                self.stats.len() - 1
            }
        };
        &mut self.stats[index]
    }

    fn handle(&mut self, id: u32, event: LinkEvent) {
        let Some(transport) = self.open.get(&id).map(|l| l.transport) else {
            return; // the last words of a link that was just closed
        };
        match event {
            LinkEvent::Attempt => {
                self.stats_mut(transport).requests += 1;
                if let Some((current, _, LinkState::Retrying(_))) = self.links.current()
                    && current == id
                {
                    self.links.set_state(id, LinkState::Connecting);
                }
            }
            LinkEvent::Bytes(n) => self.stats_mut(transport).bytes += n as u64,
            LinkEvent::Lost { retry_in_ms } => {
                self.stats_mut(transport).reconnects += 1;
                let close = self.links.set_state(id, LinkState::Retrying(retry_in_ms));
                self.close(close);
            }
            LinkEvent::Refused(error) => self.ui.form_error.set(Some(describe(&error))),
            LinkEvent::Inbound(inbound) => self.inbound(id, transport, inbound),
        }
        self.publish_state();
    }

    fn inbound(&mut self, id: u32, transport: Transport, inbound: Inbound) {
        let mut added = Vec::new();
        if let Inbound::Welcome(welcome) = &inbound {
            if let Some(link) = self.open.get_mut(&id) {
                link.epoch = Some(welcome.epoch.clone());
            }
            let close = self.links.set_state(id, LinkState::Live);
            self.close(close);
        }
        let Some(epoch) = self.open.get(&id).and_then(|l| l.epoch.clone()) else {
            return;
        };
        let welcome = matches!(inbound, Inbound::Welcome(_));
        added.extend(self.timeline.apply(&epoch, inbound));
        if welcome && self.links.is_current(id) {
            let text = format!("connection established ({})", label(transport));
            added.push(self.timeline.notice(text, false));
        }
        let me = self.ui.name.get_untracked();
        let now = browser::now_ms();
        for entry in &added {
            if let Entry::Message { message, .. } = entry
                && let Some(ms) = self.echo.echoed(message, &me, now)
            {
                self.stats_mut(transport).latency.record(ms);
            }
        }
        if !added.is_empty() {
            self.ui.entries.update(|entries| {
                entries.extend(added);
                let excess = entries.len().saturating_sub(MAX_SHOWN);
                entries.drain(..excess);
            });
        }
    }

    fn publish_state(&self) {
        let status = if !browser::online() {
            "offline".to_owned()
        } else {
            match self.links.current() {
                None => "offline".to_owned(),
                Some((_, _, LinkState::Connecting)) => "connecting…".to_owned(),
                Some((_, transport, LinkState::Live)) => {
                    format!("connected via {}", label(transport))
                }
                Some((_, _, LinkState::Retrying(ms))) => {
                    format!("reconnecting in {:.1} s", f64::from(ms) / 1000.0)
                }
            }
        };
        self.ui.status.set(status);
        self.ui.stats.set(self.stats.clone());
    }

    /// Sends over the WebSocket when that is the live transport, else with `POST`.
    fn send(&mut self, text: String) {
        self.echo.sent(&text, browser::now_ms());
        self.ui.form_error.set(None);
        if let Some((id, Transport::Ws, LinkState::Live)) = self.links.current() {
            let frame = serde_json::to_string(&ClientFrame::Send { text: text.clone() });
            if let (Some(link), Ok(frame)) = (self.open.get(&id), frame)
                && link.link.send(frame)
            {
                return;
            }
        }
        let url = format!("/api/rooms/{}/messages", self.room);
        let request = PublishRequest {
            from: self.ui.name.get_untracked(),
            text,
        };
        let this = self.this.clone();
        let ui = self.ui;
        spawn_local(async move {
            match publish(&url, &request).await {
                Ok(id) => {
                    if let Some(controller) = this.upgrade() {
                        controller.borrow_mut().echo.acknowledged(&request.text, id);
                    }
                }
                Err(message) => ui.form_error.set(Some(message)),
            }
        });
    }

    fn shutdown(&mut self) {
        let ids = self.links.close_all();
        self.close(ids);
    }
}

async fn publish(url: &str, request: &PublishRequest) -> Result<u64, String> {
    let json = serde_json::to_string(request).map_err(|e| e.to_string())?;
    let answer = crate::fetch::post_json(url, &json)
        .await
        .map_err(|_| "could not reach the relay; check your connection".to_owned())?;
    if answer.ok() {
        return serde_json::from_str::<PublishResponse>(&answer.body)
            .map(|published| published.id)
            .map_err(|e| e.to_string());
    }
    match serde_json::from_str::<ServerEvent>(&answer.body) {
        Ok(ServerEvent::Error(error)) => Err(describe(&error)),
        _ => Err(format!("the relay refused the message ({})", answer.status)),
    }
}

fn describe(error: &ErrorBody) -> String {
    match error.retry_after_ms {
        Some(ms) => format!(
            "{} (try again in {:.1} s)",
            error.message,
            ms as f64 / 1000.0
        ),
        None => error.message.clone(),
    }
}

fn valid_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(format!(
            "names are 1-{MAX_NAME_CHARS} characters, without control characters"
        ));
    }
    Ok(name.to_owned())
}

#[component]
pub fn App() -> impl IntoView {
    let room = browser::room_from_url();
    let ui = Ui {
        entries: RwSignal::new(Vec::new()),
        status: RwSignal::new("connecting…".to_owned()),
        stats: RwSignal::new(Vec::new()),
        form_error: RwSignal::new(None),
        transport: RwSignal::new(browser::transport_from_url()),
        name: RwSignal::new(browser::stored_name()),
    };
    let controller = Controller::new(room.clone(), ui);
    controller
        .borrow_mut()
        .switch_to(ui.transport.get_untracked());

    // The page owns the controller; when it goes, every link goes with it.
    let owned = SendWrapper::new(controller.clone());
    on_cleanup(move || owned.borrow_mut().shutdown());
    for event in ["online", "offline"] {
        let controller = controller.clone();
        let listener = window_event_listener_untyped(event, move |_| {
            controller.borrow().publish_state();
        });
        on_cleanup(move || listener.remove());
    }

    let on_transport = {
        let controller = controller.clone();
        move |ev| {
            if let Some(transport) = parse_transport(&event_target_value(&ev)) {
                controller.borrow_mut().switch_to(transport);
            }
        }
    };
    let on_interval = {
        let controller = controller.clone();
        move |ev| {
            if let Ok(seconds) = event_target_value(&ev).parse::<f64>()
                && seconds.is_finite()
            {
                let ms = (seconds.clamp(0.1, 60.0) * 1000.0).round() as u32;
                controller.borrow().poll_interval_ms.set(ms);
            }
        }
    };
    let on_name = {
        let controller = controller.clone();
        move |ev| match valid_name(&event_target_value(&ev)) {
            Ok(name) => {
                ui.form_error.set(None);
                if name != ui.name.get_untracked() {
                    browser::store_name(&name);
                    ui.name.set(name);
                    // A WebSocket's name is fixed when it opens: reopen it under the new one.
                    let mut controller = controller.borrow_mut();
                    if ui.transport.get_untracked() == Transport::Ws {
                        controller.switch_to(Transport::Ws);
                    }
                }
            }
            Err(message) => ui.form_error.set(Some(message)),
        }
    };

    let input = NodeRef::<html::Input>::new();
    let on_submit = {
        let controller = controller.clone();
        move |ev: SubmitEvent| {
            ev.prevent_default();
            let Some(field) = input.get() else { return };
            let text = field.value().trim().to_owned();
            if text.is_empty() {
                return;
            }
            if text.len() > MAX_TEXT_BYTES {
                ui.form_error.set(Some(format!(
                    "message is {} bytes; the limit is {MAX_TEXT_BYTES}",
                    text.len()
                )));
                return;
            }
            field.set_value("");
            controller.borrow_mut().send(text);
        }
    };

    view! {
        <main class="chat">
            <header class="top">
                <h1>"Group chat"</h1>
                <p class="room">"Room " <strong>{room}</strong></p>
            </header>
            <section class="controls" aria-label="Connection">
                <label for="transport">"Transport"</label>
                <select id="transport" on:change=on_transport prop:value=move || ui.transport.get().as_str()>
                    {Transport::ALL
                        .into_iter()
                        .map(|t| view! { <option value=t.as_str()>{label(t)}</option> })
                        .collect_view()}
                </select>
                <label for="poll-interval">"Short-poll interval (s)"</label>
                <input id="poll-interval" type="number" min="0.1" max="60" step="0.1" value="1" on:change=on_interval/>
                <label for="name">"Name"</label>
                <input id="name" type="text" maxlength="32" autocomplete="nickname" prop:value=move || ui.name.get() on:change=on_name/>
                <p id="status" role="status">{move || ui.status.get()}</p>
            </section>
            <MessageList entries=ui.entries name=ui.name/>
            <form id="input-form" on:submit=on_submit>
                <label for="message">"Enter Message:"</label>
                <input id="message" type="text" autocomplete="off" node_ref=input/>
                <button type="submit">"Send"</button>
                <p id="form-error" role="alert">{move || ui.form_error.get()}</p>
            </form>
            <StatsPanel stats=ui.stats/>
        </main>
    }
}

/// The messages and notices, newest at the bottom, kept in view as they arrive.
#[component]
fn MessageList(
    /// Lines to show, oldest first.
    entries: RwSignal<Vec<Entry>>,
    /// The user's name, to mark their own messages.
    name: RwSignal<String>,
) -> impl IntoView {
    let list = NodeRef::<html::Ul>::new();
    Effect::new(move |_| {
        entries.track();
        if let Some(list) = list.get() {
            list.set_scroll_top(list.scroll_height());
        }
    });
    view! {
        <ul id="messages" aria-live="polite" aria-label="Messages" node_ref=list>
            <For each=move || entries.get() key=Entry::key let:entry>
                {match entry {
                    Entry::Message { message, .. } => {
                        let mine = message.from == name.get_untracked();
                        view! {
                            <li class="message" class:mine=mine data-id=message.id>
                                <span class="from">{message.from}</span>
                                <span class="text">{message.text}</span>
                                <time>{browser::clock(message.ts)}</time>
                            </li>
                        }
                        .into_any()
                    }
                    Entry::Notice { text, warning, .. } => {
                        view! { <li class="notice" class:warning=warning>{text}</li> }.into_any()
                    }
                }}
            </For>
        </ul>
    }
}

/// Per-transport figures and a chart of recent echo latencies.
#[component]
fn StatsPanel(
    /// One entry per transport used in this session.
    stats: RwSignal<Vec<TransportStats>>,
) -> impl IntoView {
    let ms = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), |v| format!("{v:.1} ms"));
    view! {
        <section id="transport-stats" aria-label="Transport statistics">
            <h2>"Transports"</h2>
            <p class="hint">"Echo latency: from pressing Send to your message coming back."</p>
            <table>
                <thead>
                    <tr>
                        <th scope="col">"Transport"</th>
                        <th scope="col" title="Echo latency of your latest message">"Last"</th>
                        <th scope="col" title="Median echo latency">"Median"</th>
                        <th scope="col" title="95th percentile of echo latency">"p95"</th>
                        <th scope="col" title="Connections opened (WebSocket, SSE) or HTTP requests made (polling)">"Requests"</th>
                        <th scope="col" title="Payload bytes received">"Bytes in"</th>
                        <th scope="col">"Reconnects"</th>
                    </tr>
                </thead>
                <tbody>
                    <For each=move || stats.get() key=|s| (s.transport, s.requests, s.bytes, s.reconnects, s.latency.count) let:s>
                        <tr data-transport=s.transport.as_str()>
                            <th scope="row"><span class=format!("swatch {}", s.transport.as_str())></span>{label(s.transport)}</th>
                            <td class="latency-last">{ms(s.latency.last())}</td>
                            <td class="latency-median">{ms(s.latency.median())}</td>
                            <td class="latency-p95">{ms(s.latency.p95())}</td>
                            <td class="requests">{s.requests}</td>
                            <td class="bytes">{s.bytes}</td>
                            <td class="reconnects">{s.reconnects}</td>
                        </tr>
                    </For>
                </tbody>
            </table>
            <LatencyChart stats/>
        </section>
    }
}

/// Latencies span three orders of magnitude across transports (a WebSocket echo in
/// milliseconds, a short poll in a second): a log scale keeps every line readable.
fn scale(ms: f64) -> f64 {
    (1.0 + ms.max(0.0)).log10()
}

/// Recent echo latencies, one line per transport.
#[component]
fn LatencyChart(stats: RwSignal<Vec<TransportStats>>) -> impl IntoView {
    const WIDTH: f64 = 320.0;
    const HEIGHT: f64 = 90.0;
    let lines = move || {
        let stats = stats.get();
        let max = stats
            .iter()
            .flat_map(|s| s.latency.samples())
            .fold(1.0_f64, f64::max);
        // Spread the longest series across the width; the others share its scale.
        let longest = stats
            .iter()
            .map(|s| s.latency.samples().count())
            .max()
            .unwrap_or(0);
        let step = WIDTH / (longest.max(2) - 1) as f64;
        stats
            .into_iter()
            .filter(|s| s.latency.last().is_some())
            .map(|s| {
                let points: Vec<(f64, f64)> = s
                    .latency
                    .samples()
                    .enumerate()
                    .map(|(i, v)| (i as f64 * step, HEIGHT - scale(v) / scale(max) * HEIGHT))
                    .collect();
                let (x, y) = points.last().copied().unwrap_or_default();
                let points = points
                    .iter()
                    .map(|(x, y)| format!("{x:.1},{y:.1}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                let class = s.transport.as_str();
                // A round-capped zero-length line marks the newest sample: unlike a circle it
                // stays round in the stretched chart, and shows before there is a line.
                let (x, y) = (format!("{x:.1}"), format!("{y:.1}"));
                view! {
                    <polyline class=format!("line {class}") points=points/>
                    <line class=format!("dot {class}") x1=x.clone() y1=y.clone() x2=x y2=y/>
                }
            })
            .collect_view()
    };
    let peak = move || {
        let max = stats
            .get()
            .iter()
            .flat_map(|s| s.latency.samples())
            .fold(0.0_f64, f64::max);
        format!("max {max:.0} ms")
    };
    view! {
        <figure class="chart">
            <svg viewBox=format!("0 0 {WIDTH} {HEIGHT}") preserveAspectRatio="none" role="img" aria-label="Recent echo latencies per transport">
                {lines}
            </svg>
            <figcaption>"Echo latency of your last messages (log scale) · " {peak}</figcaption>
        </figure>
    }
}
