//! Progress on stderr, shown only when stderr is a terminal: bars for
//! hashing work, and the pieces of the download status line (fitting it to
//! the terminal, rates over a window, plurals and short durations).

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A hashing bar appears only once the work has taken this long, so that
/// quick work (an empty folder, a small file) does not flash a bar.
const REVEAL_AFTER: Duration = Duration::from_millis(500);

/// A byte-count progress bar for hashing work that is drawn only once the
/// work has taken [`REVEAL_AFTER`]; never drawn when `quiet` or when stderr
/// is not a terminal (so logs and pipes stay clean).
pub struct WorkBar {
    bar: ProgressBar,
    started: Instant,
    /// Whether the bar may be drawn at all.
    drawable: bool,
    shown: AtomicBool,
}

/// See [`WorkBar`].
pub fn bytes_bar(total: u64, verb: &str, quiet: bool) -> WorkBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
    let template = format!(
        "{verb:>9} [{{bar:30}}] {{percent:>3}}% {{bytes}}/{{total_bytes}} {{binary_bytes_per_sec}} ETA {{eta}}"
    );
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    WorkBar {
        bar,
        started: Instant::now(),
        drawable: !quiet && std::io::stderr().is_terminal(),
        shown: AtomicBool::new(false),
    }
}

impl WorkBar {
    /// Records progress; draws the bar from now on if the work has taken
    /// long enough and is not done.
    pub fn set_position(&self, done: u64) {
        self.bar.set_position(done);
        let unfinished = self.bar.length().is_some_and(|len| done < len);
        if self.drawable
            && unfinished
            && self.started.elapsed() >= REVEAL_AFTER
            && !self.shown.swap(true, Ordering::Relaxed)
        {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
    }

    /// Removes the bar, if it was drawn.
    pub fn finish_and_clear(&self) {
        self.bar.finish_and_clear();
    }
}

/// The download status line: one line of text, set whole by the caller
/// (already fitted to the terminal); hidden when stderr is not a terminal.
pub fn status_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{msg}") {
        bar.set_style(style);
    }
    bar
}

/// Columns a status line may use: the terminal's width (80 when unknown)
/// less three. One, because writing the last column makes some terminals
/// wrap; two more for the `^C` the terminal echoes after the line when the
/// user interrupts: had it wrapped, clearing the line would leave the top
/// of it behind.
pub fn line_width() -> usize {
    console::Term::stderr()
        .size_checked()
        .map_or(80, |(_, cols)| usize::from(cols))
        .saturating_sub(3)
        .max(10)
}

/// One field of a status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    text: String,
    short: Option<String>,
    /// 0 is the most important; higher ones are shortened, then dropped,
    /// first.
    priority: u8,
    /// Cut to fit (with "…") rather than dropped, as long as
    /// [`ELASTIC_MIN`] characters remain: a message that matters even
    /// when only its start fits.
    elastic: bool,
}

/// Fewest characters an elastic field is cut to before it is dropped.
const ELASTIC_MIN: usize = 16;

impl Field {
    /// A field shown as `text` or not at all.
    pub fn new(priority: u8, text: impl Into<String>) -> Field {
        Field {
            text: text.into(),
            short: None,
            priority,
            elastic: false,
        }
    }

    /// A shorter form to use before dropping the field.
    pub fn or_short(mut self, short: impl Into<String>) -> Field {
        self.short = Some(short.into());
        self
    }

    /// Cut to fit rather than dropped (see [`Field::elastic`]).
    pub fn elastic(mut self) -> Field {
        self.elastic = true;
        self
    }
}

/// Characters of `s` (status lines hold no wide characters).
fn width_of(s: &str) -> usize {
    s.chars().count()
}

/// `s` cut to `max` characters, the last one "…" when cut.
fn cut(s: &str, max: usize) -> String {
    if width_of(s) <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    // "can…" rather than "can …".
    out.truncate(out.trim_end().len());
    if max > 0 {
        out.push('…');
    }
    out
}

/// Joins `fields` with spaces into a line of at most `width` characters.
/// From the least important level up: its fields take their short forms;
/// then, while the line is too wide, its other fields are dropped
/// (rightmost first), then its elastic ones. While a level is weighed,
/// elastic fields of that level or below count as cut to [`ELASTIC_MIN`]
/// and more important ones at full width, so a less important field never
/// squeezes a more important one. The elastic fields left then share the
/// room; a line still too wide (the most important fields alone) is cut.
pub fn fit(fields: &[Field], width: usize) -> String {
    // What each field shows now; `None`: dropped.
    let mut shown: Vec<Option<String>> = fields.iter().map(|f| Some(f.text.clone())).collect();
    // The line's width while level `level` is weighed.
    let line_width = |shown: &[Option<String>], level: u8| -> usize {
        let parts: Vec<usize> = fields
            .iter()
            .zip(shown)
            .filter_map(|(f, s)| {
                let w = width_of(s.as_deref()?);
                Some(if f.elastic && f.priority >= level {
                    w.min(ELASTIC_MIN)
                } else {
                    w
                })
            })
            .collect();
        parts.iter().sum::<usize>() + parts.len().saturating_sub(1)
    };
    let levels = fields.iter().map(|f| f.priority).max().unwrap_or(0);
    for level in (1..=levels).rev() {
        if line_width(&shown, level) <= width {
            break;
        }
        for (f, s) in fields.iter().zip(shown.iter_mut()) {
            if let (true, Some(short), Some(_)) = (f.priority == level, &f.short, &s) {
                *s = Some(short.clone());
            }
        }
        let at_level = |elastic: bool| {
            fields
                .iter()
                .enumerate()
                .filter(move |(_, f)| f.priority == level && f.elastic == elastic)
                .map(|(i, _)| i)
        };
        let order: Vec<usize> = at_level(false).rev().chain(at_level(true).rev()).collect();
        for i in order {
            if line_width(&shown, level) <= width {
                break;
            }
            if let Some(s) = shown.get_mut(i) {
                *s = None;
            }
        }
    }
    share_elastic_room(fields, &mut shown, width);
    let line: Vec<String> = shown.into_iter().flatten().collect();
    // Fields may be padded so that they do not jitter; not at the start.
    cut(line.join(" ").trim_start(), width)
}

/// Cuts the elastic fields in `shown` so that the line fits `width`: they
/// share what the other fields leave, a short one keeping all it needs and
/// the others an equal part of the rest.
fn share_elastic_room(fields: &[Field], shown: &mut [Option<String>], width: usize) {
    let present: Vec<(usize, bool, usize)> = fields
        .iter()
        .zip(shown.iter())
        .enumerate()
        .filter_map(|(i, (f, s))| Some((i, f.elastic, width_of(s.as_deref()?))))
        .collect();
    let separators = present.len().saturating_sub(1);
    let fixed: usize = present.iter().filter(|p| !p.1).map(|p| p.2).sum();
    let mut elastic: Vec<(usize, usize)> =
        present.iter().filter(|p| p.1).map(|p| (p.0, p.2)).collect();
    if fixed + separators + elastic.iter().map(|e| e.1).sum::<usize>() <= width {
        return;
    }
    let mut room = width.saturating_sub(fixed + separators);
    elastic.sort_by_key(|e| e.1);
    let count = elastic.len();
    for (k, (i, len)) in elastic.into_iter().enumerate() {
        let share = (room / (count - k)).min(len);
        room -= share;
        if let Some(Some(s)) = shown.get_mut(i) {
            *s = cut(s, share);
        }
    }
}

/// `[=====>    ]` with `cells` cells between the brackets.
pub fn bar_text(done: u64, total: u64, cells: usize) -> String {
    let filled = if total == 0 {
        cells
    } else {
        ((done.min(total) as f64 / total as f64) * cells as f64) as usize
    };
    let mut s = String::with_capacity(cells + 2);
    s.push('[');
    for i in 0..cells {
        s.push(if i < filled {
            '='
        } else if i == filled {
            '>'
        } else {
            ' '
        });
    }
    s.push(']');
    s
}

/// Byte rates over the last few seconds: what flowed in the window, so a
/// rate drops to 0 once nothing has flowed for that long (a moving average
/// would only approach 0, and show a rate long after the last byte).
#[derive(Debug)]
pub struct RateWindow {
    window: Duration,
    /// (when, counter) samples, oldest first, spanning at most `window`
    /// plus one sample before it.
    samples: VecDeque<(Instant, u64)>,
}

impl RateWindow {
    /// Rates over `window`.
    pub fn new(window: Duration) -> RateWindow {
        RateWindow {
            window,
            samples: VecDeque::new(),
        }
    }

    /// Records the counter's value at `now` and returns the rate in bytes
    /// per second over the window (0 until two samples are in).
    pub fn sample(&mut self, now: Instant, counter: u64) -> f64 {
        self.samples.push_back((now, counter));
        // Keep one sample at or before the window's start, so the rate
        // covers the whole window.
        while self
            .samples
            .get(1)
            .is_some_and(|(t, _)| now.duration_since(*t) >= self.window)
        {
            self.samples.pop_front();
        }
        let Some(&(t0, c0)) = self.samples.front() else {
            return 0.0;
        };
        let dt = now.duration_since(t0).as_secs_f64();
        if dt <= 0.0 {
            return 0.0;
        }
        counter.saturating_sub(c0) as f64 / dt
    }
}

/// "1 peer", "2 peers".
pub fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// A short duration for status lines: "45s", "3m20s", "2h05m", "3d04h".
pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// How long something took, for summaries: "0.4 s", "12.5 s", then
/// "3m20s" and on.
pub fn took(d: Duration) -> String {
    if d < Duration::from_secs(60) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        short_duration(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A download status line's fields, as `spawn_display` builds them.
    fn download_fields() -> Vec<Field> {
        vec![
            Field::new(4, bar_text(40, 100, 20)).or_short(bar_text(40, 100, 8)),
            Field::new(0, " 40%"),
            Field::new(3, "41.3 MiB/103.2 MiB").or_short("41.3 MiB"),
            Field::new(1, "down 2.10 MiB/s").or_short("↓2.10 MiB/s"),
            Field::new(4, "up 512.0 KiB/s").or_short("↑512.0 KiB/s"),
            Field::new(5, "ratio 0.12"),
            Field::new(2, "ETA 29s"),
            Field::new(1, "peers 3/12"),
            Field::new(5, "serving 2"),
            Field::new(6, "pieces 165/413"),
            Field::new(2, "tracker: cannot connect: connection refused").elastic(),
        ]
    }

    #[test]
    fn fits_every_width() {
        let fields = download_fields();
        for width in [40, 80, 120, 200] {
            let line = fit(&fields, width);
            assert!(width_of(&line) <= width, "{width}: {line:?}");
            // The most important fields survive at every width.
            assert!(line.contains("40%"), "{width}: {line:?}");
            assert!(line.contains("peers 3/12"), "{width}: {line:?}");
        }
        let wide = fit(&fields, 200);
        assert!(wide.contains("pieces 165/413"), "{wide}");
        assert!(
            wide.contains("tracker: cannot connect: connection refused"),
            "{wide}"
        );
        assert!(wide.contains("[========>           ]"), "{wide}");

        let at_120 = fit(&fields, 120);
        assert!(at_120.contains("ETA 29s"), "{at_120}");
        assert!(at_120.contains("tracker: cannot conn"), "{at_120}");

        let at_80 = fit(&fields, 80);
        assert!(at_80.contains("2.10 MiB/s"), "{at_80}");
        assert!(at_80.contains("ETA 29s"), "{at_80}");
        assert!(
            !at_80.contains("pieces"),
            "least important dropped first: {at_80}"
        );
        assert!(at_80.contains("tracker:"), "{at_80}");

        let at_40 = fit(&fields, 40);
        assert!(at_40.contains("2.10 MiB/s"), "{at_40}");
        assert!(!at_40.contains("ratio"), "{at_40}");
    }

    #[test]
    fn shortens_before_dropping_and_cuts_elastic_fields() {
        let fields = vec![
            Field::new(0, "AAAA"),
            Field::new(1, "long form here").or_short("short"),
            Field::new(2, "a message that can be cut at its end").elastic(),
        ];
        assert_eq!(
            fit(&fields, 100),
            "AAAA long form here a message that can be cut at its end"
        );
        // The elastic field, least important, is cut first.
        assert_eq!(fit(&fields, 40), "AAAA long form here a message that can…");
        // Too little room for it: dropped; then the next level shortens.
        assert_eq!(fit(&fields, 25), "AAAA long form here");
        assert_eq!(fit(&fields, 12), "AAAA short");
        // Only the most important left, and still too wide: cut.
        assert_eq!(fit(&fields, 3), "AA…");
    }

    #[test]
    fn bars() {
        assert_eq!(bar_text(0, 100, 4), "[>   ]");
        assert_eq!(bar_text(50, 100, 4), "[==> ]");
        assert_eq!(bar_text(100, 100, 4), "[====]");
        assert_eq!(bar_text(0, 0, 2), "[==]");
    }

    #[test]
    fn rates_fall_to_zero_once_nothing_flows() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut r = RateWindow::new(Duration::from_secs(5));
        assert_eq!(r.sample(at(0), 0), 0.0);
        assert_eq!(r.sample(at(1000), 1000), 1000.0);
        assert_eq!(r.sample(at(2000), 3000), 1500.0);
        // Nothing more arrives: the rate falls, and is 0 once the window
        // holds no byte.
        assert!(r.sample(at(4000), 3000) < 1000.0);
        assert_eq!(r.sample(at(7000), 3000), 0.0);
        assert_eq!(r.sample(at(7500), 3000), 0.0);
        // And rises again.
        assert!(r.sample(at(8000), 4000) > 0.0);
    }

    #[test]
    fn words_and_durations() {
        assert_eq!(plural(1, "peer", "peers"), "1 peer");
        assert_eq!(plural(0, "peer", "peers"), "0 peers");
        assert_eq!(plural(2, "peer", "peers"), "2 peers");
        assert_eq!(short_duration(Duration::from_secs(45)), "45s");
        assert_eq!(short_duration(Duration::from_secs(200)), "3m20s");
        assert_eq!(short_duration(Duration::from_secs(7500)), "2h05m");
        assert_eq!(
            short_duration(Duration::from_secs(3 * 86_400 + 4 * 3600)),
            "3d04h"
        );
        assert_eq!(took(Duration::from_millis(400)), "0.4 s");
        assert_eq!(took(Duration::from_millis(12_345)), "12.3 s");
        assert_eq!(took(Duration::from_secs(200)), "3m20s");
    }
}
