//! Repeated log lines of one kind are summarised: on a network that
//! blocks UDP the WebRTC stack logs `Failed to write packet … Operation
//! not permitted` at ERROR for every connectivity check (every 50 ms, 170
//! KB of log in three minutes). Here each kind — one place in the source,
//! whatever the addresses in its text — is written at most
//! `--log-repeats` times per `--log-repeat-window`; the rest are counted
//! and said in one line at the end of the window ("… more like this").
//!
//! A hand-written filter rather than a crate such as `tracing-throttle`:
//! those tell kinds apart by their message text, and the WebRTC stack logs
//! through the `log` crate with the addresses formatted into the text, so
//! every candidate pair would be a kind of its own. The kind here is the
//! source location (`tracing-log`'s normalised metadata for `log`
//! records).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata};
use tracing_log::NormalizeEvent;
use tracing_subscriber::layer::{Context, Filter};

/// Default lines of one kind written per window.
pub const DEFAULT_LOG_REPEATS: u32 = 3;
/// Default window over which repeats are counted, and after which the
/// count is said.
pub const DEFAULT_LOG_REPEAT_WINDOW: Duration = Duration::from_secs(30);
/// Kinds tracked at once; lines of further kinds are written unfiltered
/// (a bound on memory, never reached by the handful of places that repeat).
pub const MAX_KINDS: usize = 256;
/// Characters of the first line of a kind quoted in its summary.
pub const QUOTED_CHARS: usize = 200;
/// Target of the summary lines, which are never filtered themselves.
pub const SUMMARY_TARGET: &str = "flnode::log_summary";

/// `flnode up`'s flags for it.
#[derive(clap::Args, Debug, Default)]
pub struct LogArgs {
    /// Log lines of one kind (one place in the source) written per
    /// --log-repeat-window; the rest are counted and summarised in one
    /// line [default: 3]
    #[arg(long, env = "FLNODE_LOG_REPEATS")]
    pub log_repeats: Option<u32>,
    /// Seconds over which repeated log lines are counted [default: 30]
    #[arg(long, env = "FLNODE_LOG_REPEAT_WINDOW")]
    pub log_repeat_window: Option<u64>,
}

impl LogArgs {
    /// Lines of one kind per window, at least one.
    pub fn repeats(&self) -> u32 {
        self.log_repeats.unwrap_or(DEFAULT_LOG_REPEATS).max(1)
    }

    /// The window, at least a second.
    pub fn window(&self) -> Duration {
        self.log_repeat_window
            .map_or(DEFAULT_LOG_REPEAT_WINDOW, Duration::from_secs)
            .max(Duration::from_secs(1))
    }
}

/// One kind's count in the current window.
#[derive(Debug)]
struct Kind {
    level: Level,
    /// Its first line in the window, for the summary.
    quoted: String,
    written: u32,
    suppressed: u64,
}

/// What the end of a window says about one kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub level: Level,
    pub quoted: String,
    pub suppressed: u64,
}

/// The counts of every kind in the current window: pure bookkeeping,
/// tested without a subscriber.
#[derive(Debug)]
pub struct Repeats {
    kinds: HashMap<u64, Kind>,
    per_window: u32,
}

impl Repeats {
    pub fn new(per_window: u32) -> Self {
        Self {
            kinds: HashMap::new(),
            per_window,
        }
    }

    /// Whether a line of kind `key` is written; `quote` describes it the
    /// first time in a window.
    pub fn admit(&mut self, key: u64, level: Level, quote: impl FnOnce() -> String) -> bool {
        if !self.kinds.contains_key(&key) && self.kinds.len() >= MAX_KINDS {
            return true;
        }
        let kind = self.kinds.entry(key).or_insert_with(|| Kind {
            level,
            quoted: quote(),
            written: 0,
            suppressed: 0,
        });
        if kind.written < self.per_window {
            kind.written += 1;
            true
        } else {
            kind.suppressed += 1;
            false
        }
    }

    /// Ends the window: a summary per kind that had lines held back, and
    /// every count starts again.
    pub fn end_window(&mut self) -> Vec<Summary> {
        self.kinds
            .drain()
            .filter(|(_, kind)| kind.suppressed > 0)
            .map(|(_, kind)| Summary {
                level: kind.level,
                quoted: kind.quoted,
                suppressed: kind.suppressed,
            })
            .collect()
    }
}

/// The filter in front of the log writer.
#[derive(Clone)]
pub struct RepeatFilter {
    repeats: Arc<Mutex<Repeats>>,
}

impl<S> Filter<S> for RepeatFilter {
    fn enabled(&self, _: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &Event<'_>, _: &Context<'_, S>) -> bool {
        let normalized = event.normalized_metadata();
        let metadata = normalized.as_ref().unwrap_or_else(|| event.metadata());
        if metadata.target() == SUMMARY_TARGET {
            return true;
        }
        let key = kind_of(metadata);
        self.repeats
            .lock()
            .admit(key, *metadata.level(), || quote(metadata, event))
    }
}

impl RepeatFilter {
    fn new(per_window: u32) -> Self {
        Self {
            repeats: Arc::new(Mutex::new(Repeats::new(per_window))),
        }
    }

    /// Ends a window of `window`: says what was held back, per kind.
    fn end_window(&self, window: Duration) {
        let summaries = self.repeats.lock().end_window();
        for summary in summaries {
            say(&summary, window);
        }
    }
}

/// The filter, and a thread that says the counts at the end of every
/// `window` (the process's whole life: logging is set up once).
pub fn filter(per_window: u32, window: Duration) -> RepeatFilter {
    let filter = RepeatFilter::new(per_window);
    let ticking = filter.clone();
    let spawned = std::thread::Builder::new()
        .name("log-summary".into())
        .spawn(move || loop {
            std::thread::sleep(window);
            ticking.end_window(window);
        });
    if let Err(error) = spawned {
        eprintln!("flnode: repeated log lines will not be summarised: {error}");
    }
    filter
}

fn say(summary: &Summary, window: Duration) {
    let (suppressed, quoted) = (summary.suppressed, summary.quoted.as_str());
    let window = window.as_secs();
    macro_rules! at {
        ($level:ident) => {
            tracing::$level!(
                target: SUMMARY_TARGET,
                suppressed,
                "{suppressed} more like this in the last {window} s: {quoted}"
            )
        };
    }
    match summary.level {
        Level::ERROR => at!(error),
        Level::WARN => at!(warn),
        Level::INFO => at!(info),
        Level::DEBUG => at!(debug),
        _ => at!(trace),
    }
}

/// A kind is a place in the source (and the level logged there).
fn kind_of(metadata: &Metadata<'_>) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (metadata.level(), metadata.target(), metadata.file(), metadata.line()).hash(&mut hasher);
    hasher.finish()
}

/// `target: message`, cut to [`QUOTED_CHARS`].
fn quote(metadata: &Metadata<'_>, event: &Event<'_>) -> String {
    struct Message(String);
    impl Visit for Message {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                self.0 = format!("{value:?}");
            }
        }
    }
    let mut message = Message(String::new());
    event.record(&mut message);
    let text = format!("{}: {}", metadata.target(), message.0);
    text.chars().take(QUOTED_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_is_written_a_few_times_per_window_and_the_rest_counted() {
        let mut repeats = Repeats::new(3);
        let written = (0..1200)
            .filter(|n| repeats.admit(1, Level::ERROR, || format!("first {n}")))
            .count();
        assert_eq!(written, 3);
        assert!(
            repeats.admit(2, Level::WARN, || "other".into()),
            "another kind has its own count"
        );
        assert_eq!(
            repeats.end_window(),
            vec![Summary {
                level: Level::ERROR,
                quoted: "first 0".into(),
                suppressed: 1197
            }]
        );
        assert!(
            repeats.admit(1, Level::ERROR, || "again".into()),
            "a new window starts afresh"
        );
        assert!(repeats.end_window().is_empty(), "nothing held back, nothing said");
    }

    /// What a subscriber writes, for reading back.
    #[derive(Clone, Default)]
    struct Written(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Written {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_flood_from_one_place_is_three_lines_and_a_count_whatever_its_text() {
        use tracing_subscriber::layer::{Layer, SubscriberExt};
        let written = Written::default();
        let filter = RepeatFilter::new(3);
        let sink = written.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .with_filter(filter.clone());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            for port in 0..1200 {
                tracing::error!("Failed to write packet to 10.0.0.1:{port}: Operation not permitted");
            }
            tracing::warn!("another place");
            filter.end_window(Duration::from_secs(30));
        });
        let text = String::from_utf8(written.0.lock().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[..3].iter().all(|line| line.contains("Failed to write packet")));
        assert!(lines[3].contains("another place"));
        assert!(
            lines[4].contains(" ERROR ") && lines[4].contains("1197 more like this in the last 30 s"),
            "{text}"
        );
        assert!(
            lines[4].contains("Failed to write packet to 10.0.0.1:0"),
            "the first one is quoted"
        );
    }

    #[test]
    fn the_table_of_kinds_is_bounded() {
        let mut repeats = Repeats::new(1);
        for key in 0..MAX_KINDS as u64 {
            repeats.admit(key, Level::INFO, String::new);
        }
        // Beyond the bound: written, never tracked.
        for _ in 0..10 {
            assert!(repeats.admit(u64::MAX, Level::INFO, String::new));
        }
        assert_eq!(repeats.kinds.len(), MAX_KINDS);
    }
}
