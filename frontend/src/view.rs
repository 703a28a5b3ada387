//! The page: the tutorial's chat, the transport toggle, the status line and the transport
//! panel.
//!
//! [`App`] makes the signals ([`Ui`]) and the [`Controller`] that writes them, then lays out
//! the page. Components only read signals and forward user actions to the controller; the
//! element ids, classes and texts here are what the browser tests (`e2e/`) select.

use leptos::ev::SubmitEvent;
use leptos::html;
use leptos::prelude::*;
use protocol::limits::{
    DEFAULT_MAX_NAME_CHARS, DEFAULT_MAX_TEXT_BYTES, Refusal, check_name, check_text,
};
use protocol::{Member, Transport};
use send_wrapper::SendWrapper;

use crate::browser;
use crate::controller::{Controller, StatsRow, Ui};
use crate::model::number::{tenths, whole};
use crate::model::{Entry, Pending};

/// The relay's default rule for names, checked here first for an immediate answer (the relay
/// is the authority if it was configured otherwise).
fn valid_name(name: &str) -> Result<String, String> {
    // The relay's rule and default limit, checked here first for an immediate answer.
    check_name(name, DEFAULT_MAX_NAME_CHARS)
        .map(str::to_owned)
        .map_err(|_| {
            format!(
                "names are 1-{DEFAULT_MAX_NAME_CHARS} characters, without control, invisible \
                 or direction-changing characters"
            )
        })
}

#[component]
pub fn App() -> impl IntoView {
    let room = browser::room_from_url();
    // `?name=` names this member (a link reproduces it) without replacing the stored name.
    let name = browser::name_from_url()
        .and_then(|name| valid_name(&name).ok())
        .unwrap_or_else(browser::stored_name);
    let ui = Ui::new(browser::transport_from_url(), name);
    let controller = Controller::new(room.clone(), ui);
    controller
        .borrow_mut()
        .switch_to(ui.transport.get_untracked());

    // The page owns the controller; when it goes, every link goes with it.
    let owned = SendWrapper::new(controller.clone());
    on_cleanup(move || owned.borrow_mut().shutdown());
    // Leaving says so, so that the others see this tab go now (the relay's grace covers a
    // page that vanishes without a word).
    {
        let controller = controller.clone();
        let listener = window_event_listener_untyped("pagehide", move |_| {
            controller.borrow().leave();
        });
        on_cleanup(move || listener.remove());
    }
    for event in ["online", "offline"] {
        let controller = controller.clone();
        let listener = window_event_listener_untyped(event, move |_| {
            controller.borrow().publish_status();
        });
        on_cleanup(move || listener.remove());
    }

    // Whether WebTransport can be chosen: the browser and the page's origin decide at once,
    // the relay when it answers (each WebTransport attempt asks it again, for the current
    // certificate). The option is written directly, once, rather than through reactive
    // attributes, which cost the page more bytes (it is at its budget: docs/BENCHMARKS.md).
    let blocked = browser::webtransport_blocked();
    let webtransport_option = NodeRef::<html::Option_>::new();
    if blocked.is_none() {
        leptos::task::spawn_local(async move {
            // Only the relay's own answer rules it out: when it cannot be asked (a failed or
            // refused request), the option stays offered, and choosing it asks again.
            let offered = crate::api::transport_info()
                .await
                .is_none_or(|info| info.webtransport.is_some());
            if let Some(option) = webtransport_option.get_untracked() {
                let why = (!offered).then_some("not offered by this relay");
                show_availability(&option, why);
            }
        });
    }

    let on_transport = {
        let controller = controller.clone();
        move |ev| {
            if let Ok(transport) = event_target_value(&ev).parse::<Transport>() {
                controller.borrow_mut().switch_to(transport);
            }
        }
    };
    let on_interval = {
        let controller = controller.clone();
        move |ev| {
            // The browser parses the number (Rust's float parsing would cost page bytes).
            let seconds = js_sys::parse_float(&event_target_value(&ev));
            if seconds.is_finite() {
                let ms = (seconds.clamp(0.1, 60.0) * 1000.0).round() as u32;
                controller.borrow().set_poll_interval(ms);
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
                    // A link's name is fixed when it opens: reopen it under the new one
                    // (make-before-break: the member stays, under its new name).
                    controller
                        .borrow_mut()
                        .switch_to(ui.transport.get_untracked());
                }
            }
            Err(message) => ui.form_error.set(Some(message)),
        }
    };

    let on_input = {
        let controller = controller.clone();
        move |_| controller.borrow_mut().typing()
    };

    let input = NodeRef::<html::Input>::new();
    let on_submit = {
        let controller = controller.clone();
        move |ev: SubmitEvent| {
            ev.prevent_default();
            let Some(field) = input.get() else { return };
            // The relay's rule and default limit, checked here first for an immediate answer.
            let value = field.value();
            let text = match check_text(&value, DEFAULT_MAX_TEXT_BYTES) {
                Ok(text) => text.to_owned(),
                Err(Refusal::TooLong) => {
                    ui.form_error.set(Some(format!(
                        "message is {} bytes; the limit is {DEFAULT_MAX_TEXT_BYTES}",
                        value.trim().len()
                    )));
                    return;
                }
                Err(Refusal::ControlCharacter | Refusal::InvisibleCharacter) => {
                    ui.form_error.set(Some(
                        "messages may not contain control characters other than tab and line feed"
                            .into(),
                    ));
                    return;
                }
                Err(Refusal::Empty) => return,
            };
            field.set_value("");
            controller.borrow_mut().send(text);
        }
    };

    view! {
        <main class="chat">
            <header class="top">
                <h1>"Group chat"</h1>
                <p class="room">"Room " <strong>{room}</strong></p>
                <p id="presence-count">{move || format!("{} here", ui.count.get())}</p>
            </header>
            <section class="controls" aria-label="Connection">
                <label for="transport">"Transport"</label>
                <select id="transport" on:change=on_transport prop:value=move || ui.transport.get().as_str()>
                    {Transport::ALL
                        .into_iter()
                        .filter(|&t| t != Transport::WebTransport)
                        .map(|t| view! { <option value=t.as_str()>{t.label()}</option> })
                        .collect_view()}
                    // Disabled until the relay says it offers it (or for good, with the reason).
                    <option value=Transport::WebTransport.as_str() node_ref=webtransport_option disabled=true>
                        {unavailable_label(Some(blocked.unwrap_or("checking…")))}
                    </option>
                </select>
                <label for="poll-interval">"Short-poll interval (s)"</label>
                <input id="poll-interval" type="number" min="0.1" max="60" step="0.1" value="1" on:change=on_interval/>
                <label for="name">"Name"</label>
                <input id="name" type="text" maxlength=DEFAULT_MAX_NAME_CHARS.to_string() autocomplete="nickname" prop:value=move || ui.name.get() on:change=on_name/>
                <p id="status" role="status">{move || ui.status.get()}</p>
            </section>
            <HereNow members=ui.members you=ui.you/>
            <MessageList entries=ui.entries pending=ui.pending name=ui.name/>
            <p id="typing" aria-live="polite">{move || ui.typing.get()}</p>
            <form id="input-form" on:submit=on_submit>
                <label for="message">"Enter Message:"</label>
                <input id="message" type="text" autocomplete="off" node_ref=input on:input=on_input/>
                <button type="submit">"Send"</button>
                <p id="form-error" role="alert">{move || ui.form_error.get()}</p>
            </form>
            <StatsPanel stats=ui.stats/>
        </main>
    }
}

/// The WebTransport option's text: its label, and why it cannot be chosen if it cannot.
fn unavailable_label(why: Option<&str>) -> String {
    let label = Transport::WebTransport.label();
    match why {
        Some(why) => format!("{label} (unavailable: {why})"),
        None => label.to_owned(),
    }
}

/// Enables the WebTransport option, or says why it stays disabled.
fn show_availability(option: &web_sys::HtmlOptionElement, why: Option<&str>) {
    option.set_disabled(why.is_some());
    option.set_text_content(Some(&unavailable_label(why)));
}

/// Who is here: one line per member, its name and a badge per transport it uses. Keyed by
/// member, so a member who switches transports keeps its line (only its badges change).
#[component]
fn HereNow(members: RwSignal<Vec<Member>>, you: RwSignal<Option<String>>) -> impl IntoView {
    view! {
        <section class="here" aria-label="Here now">
            <h2>"Here now"</h2>
            <ul id="presence">
                <For each=move || members.get() key=|m| m.id.clone() let:member>
                    {
                        let id = member.id.clone();
                        let mine = id.clone();
                        let current = move || {
                            members.with(|all| all.iter().find(|m| m.id == id).cloned())
                        };
                        let name = {
                            let current = current.clone();
                            move || current().map(|m| m.name).unwrap_or_default()
                        };
                        let badges = move || {
                            current()
                                .map(|m| m.transports)
                                .unwrap_or_default()
                                .into_iter()
                                .map(|t| view! { <span class=format!("badge {}", t.as_str()) title=t.label()>{t.as_str()}</span> })
                                .collect_view()
                        };
                        view! {
                            <li data-id=member.id class:you=move || you.with(|you| you.as_deref() == Some(mine.as_str()))>
                                <bdi class="name">{name}</bdi>
                                {badges}
                            </li>
                        }
                    }
                </For>
            </ul>
        </section>
    }
}

/// The messages and notices, newest at the bottom, kept in view as they arrive.
#[component]
fn MessageList(
    /// Lines to show, oldest first.
    entries: RwSignal<Vec<Entry>>,
    /// The user's texts not yet confirmed by the relay, after the messages.
    pending: RwSignal<Vec<Pending>>,
    /// The user's name, to mark their own messages.
    name: RwSignal<String>,
) -> impl IntoView {
    let list = NodeRef::<html::Ul>::new();
    Effect::new(move |_| {
        entries.track();
        pending.track();
        if let Some(list) = list.get() {
            // A double in web-sys's unstable API, which the page enables for WebTransport.
            list.set_scroll_top(f64::from(list.scroll_height()));
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
                                // Each name and text is its own bidirectional island: a
                                // right-to-left override in one cannot reorder the line.
                                <bdi class="from">{message.from}</bdi>
                                <bdi class="text">{message.text}</bdi>
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
            // Not `.message`: a pending text is not a message yet; it turns into one (and
            // leaves this list) when the relay's copy arrives.
            <For each=move || pending.get() key=|p| p.seq let:p>
                <li class="pending" title="sending…">
                    <bdi class="from">{move || name.get()}</bdi>
                    <bdi class="text">{p.text}</bdi>
                    <span class="state">"sending…"</span>
                </li>
            </For>
        </ul>
    }
}

/// A latency as a cell shows it.
fn shown_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{} ms", tenths(v)))
}

/// Per-transport figures and a chart of recent echo latencies.
#[component]
fn StatsPanel(
    /// One row per transport used in this session.
    stats: RwSignal<Vec<StatsRow>>,
) -> impl IntoView {
    // Rows are keyed by transport, so each is built once; its cells then follow its own
    // signals, the counters on every event and the latency figures after each echo.
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
                        <th scope="col" title="Connections opened, or HTTP requests made">"Requests"</th>
                        <th scope="col" title="Payload bytes received">"Bytes in"</th>
                        <th scope="col">"Reconnects"</th>
                    </tr>
                </thead>
                <tbody>
                    <For each=move || stats.get() key=|row| row.transport let:row>
                        <tr data-transport=row.transport.as_str()>
                            <th scope="row"><span class=format!("swatch {}", row.transport.as_str())></span>{row.transport.label()}</th>
                            <td class="latency-last">{move || shown_ms(row.latency.with(|l| l.last))}</td>
                            <td class="latency-median">{move || shown_ms(row.latency.with(|l| l.median))}</td>
                            <td class="latency-p95">{move || shown_ms(row.latency.with(|l| l.p95))}</td>
                            <td class="requests">{move || row.counters.get().requests}</td>
                            <td class="bytes">{move || row.counters.get().bytes}</td>
                            <td class="reconnects">{move || row.counters.get().reconnects}</td>
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

/// The largest latency sample of any row, or `floor` if none is larger. Reads each row's
/// latency signal (and nothing else of the row), so a caller is redrawn by echoes alone.
fn largest_sample(rows: &[StatsRow], floor: f64) -> f64 {
    rows.iter().fold(floor, |max, row| {
        row.latency
            .with(|latency| latency.samples.iter().copied().fold(max, f64::max))
    })
}

/// Recent echo latencies, one line per transport.
#[component]
fn LatencyChart(stats: RwSignal<Vec<StatsRow>>) -> impl IntoView {
    const WIDTH: f64 = 320.0;
    const HEIGHT: f64 = 90.0;
    // Like `largest_sample`, this reads only the rows' latency signals: counting bytes and
    // requests never redraws the chart.
    let lines = move || {
        let rows = stats.get();
        let max = largest_sample(&rows, 1.0);
        // Spread the longest series across the width; the others share its scale.
        let longest = rows
            .iter()
            .map(|row| row.latency.with(|latency| latency.samples.len()))
            .max()
            .unwrap_or(0);
        let step = WIDTH / (longest.max(2) - 1) as f64;
        rows.iter()
            .filter_map(|row| {
                let (points, (x, y)) = row.latency.with(|latency| {
                    // A transport without an echo yet has no line.
                    if latency.count == 0 {
                        return None;
                    }
                    let points: Vec<(f64, f64)> = latency
                        .samples
                        .iter()
                        .enumerate()
                        .map(|(i, v)| (i as f64 * step, HEIGHT - scale(*v) / scale(max) * HEIGHT))
                        .collect();
                    let newest = points.last().copied().unwrap_or_default();
                    let points = points
                        .iter()
                        .map(|(x, y)| format!("{},{}", tenths(*x), tenths(*y)))
                        .collect::<Vec<_>>()
                        .join(" ");
                    Some((points, newest))
                })?;
                let class = row.transport.as_str();
                // A round-capped zero-length line marks the newest sample: unlike a circle it
                // stays round in the stretched chart, and shows before there is a line.
                let (x, y) = (tenths(x), tenths(y));
                Some(view! {
                    <polyline class=format!("line {class}") points=points/>
                    <line class=format!("dot {class}") x1=x.clone() y1=y.clone() x2=x y2=y/>
                })
            })
            .collect_view()
    };
    let peak = move || {
        let max = largest_sample(&stats.get(), 0.0);
        format!("max {} ms", whole(max))
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
