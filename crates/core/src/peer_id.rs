//! Peer ids: making our own and telling which client sent someone else's.
//!
//! Every BitTorrent peer picks a 20-byte *peer id* that it sends to
//! trackers and in the peer handshake. Nothing in the protocol requires
//! any structure in those bytes, but most clients put their name and
//! version at the front by one of a few conventions (see BEP 20):
//!
//! * **Azureus style**: `-` + two-character client code + four version
//!   characters + `-`, for example `-qB4620-` (qBittorrent 4.6.2). How the
//!   four version characters are read differs from client to client.
//! * **Shad0w style**: one letter, three to five version characters from
//!   the alphabet `0-9A-Za-z.`, dash padding, for example `S58B-----`.
//! * **Mainline style**: one letter followed by dash-separated decimal
//!   numbers, for example `M7-10-2-` (BitTorrent 7.10.2); aria2 uses the
//!   same idea after `A2`: `A2-1-36-0-`.
//! * A handful of clients with a scheme of their own (`exbc` BitComet,
//!   `XBT`, `TIX` Tixati, `-ML2.7.2-` MLDonkey, `OP` Opera, ...).
//!
//! [`PeerId::generate`] makes rivulet's own id in the Azureus style,
//! starting with [`CLIENT_PREFIX`]; [`identify`] (or [`PeerId::client`])
//! names the client and version behind a remote id, returning `None` for
//! ids that follow no convention it knows.

use std::fmt;

use rand::distributions::Alphanumeric;
use rand::Rng;
use thiserror::Error;

/// Number of bytes in a peer id.
pub const PEER_ID_LEN: usize = 20;

/// The first eight bytes of every peer id rivulet generates: Azureus style,
/// client code `RV`, version 0.1.0.0.
pub const CLIENT_PREFIX: &[u8; 8] = b"-RV0100-";

/// A 20-byte BitTorrent peer id.
///
/// `Debug` and `Display` show the id as text, printable ASCII as is and
/// every other byte escaped (`\xNN`, `\n`, ...).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub [u8; PEER_ID_LEN]);

/// Error for a byte string that cannot be a peer id because it is not
/// exactly 20 bytes long; holds the length it had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
#[error("a peer id is 20 bytes long, got {0} bytes")]
pub struct InvalidPeerIdLength(pub usize);

impl PeerId {
    /// Makes a new id for this client: [`CLIENT_PREFIX`] followed by twelve
    /// random ASCII letters and digits, drawn from the thread-local RNG.
    #[must_use]
    pub fn generate() -> Self {
        Self::generate_with(&mut rand::thread_rng())
    }

    /// Like [`PeerId::generate`], but draws the twelve random characters
    /// from `rng` (handy for reproducible ids in tests).
    #[must_use]
    pub fn generate_with<R: Rng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; PEER_ID_LEN];
        let mut random = rng.sample_iter(Alphanumeric);
        for (i, slot) in bytes.iter_mut().enumerate() {
            *slot = match CLIENT_PREFIX.get(i) {
                Some(&b) => b,
                // `Alphanumeric` never runs dry; the fallback is never used.
                None => random.next().unwrap_or(b'0'),
            };
        }
        PeerId(bytes)
    }

    /// Takes a peer id from a byte slice, which must be exactly 20 bytes.
    ///
    /// # Errors
    ///
    /// [`InvalidPeerIdLength`] if `bytes` is not 20 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, InvalidPeerIdLength> {
        <[u8; PEER_ID_LEN]>::try_from(bytes)
            .map(PeerId)
            .map_err(|_| InvalidPeerIdLength(bytes.len()))
    }

    /// The raw 20 bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; PEER_ID_LEN] {
        &self.0
    }

    /// Names the client and version that made this id, if its layout
    /// follows a convention [`identify`] knows.
    #[must_use]
    pub fn client(&self) -> Option<ClientInfo> {
        identify(&self.0)
    }

    /// Whether this id was made by rivulet, of any version (Azureus code `RV`).
    #[must_use]
    pub fn is_rivulet(&self) -> bool {
        self.0.starts_with(b"-RV")
    }
}

impl From<[u8; PEER_ID_LEN]> for PeerId {
    fn from(bytes: [u8; PEER_ID_LEN]) -> Self {
        PeerId(bytes)
    }
}

impl From<PeerId> for [u8; PEER_ID_LEN] {
    fn from(id: PeerId) -> Self {
        id.0
    }
}

impl TryFrom<&[u8]> for PeerId {
    type Error = InvalidPeerIdLength;

    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        PeerId::from_slice(bytes)
    }
}

impl AsRef<[u8]> for PeerId {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in &self.0 {
            write!(f, "{}", std::ascii::escape_default(b))?;
        }
        Ok(())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId(\"{self}\")")
    }
}

/// The client behind a peer id, as told by [`identify`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientInfo {
    /// The client's name, such as `"qBittorrent"`; `"unknown (XX)"` for a
    /// well-formed Azureus-style id whose two-character code `XX` is not
    /// in the table.
    pub name: String,
    /// The version as the client encodes it, such as `"4.6.2"`, possibly
    /// with a release note such as `" (Beta)"`; empty when the id carries
    /// no version.
    pub version: String,
}

impl ClientInfo {
    /// A client with the given name and version (`""` for no version).
    #[must_use]
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        ClientInfo {
            name: name.into(),
            version: version.into(),
        }
    }
}

impl fmt::Display for ClientInfo {
    /// `"qBittorrent 4.6.2"`, or just the name when the version is empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.version.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{} {}", self.name, self.version)
        }
    }
}

/// Names the client and version behind a peer id.
///
/// Takes any byte slice and returns `None` unless it is 20 bytes long.
/// Recognises Azureus-style ids (over a hundred client codes, each decoded
/// the way that client encodes its version; an unlisted code in a
/// well-formed id gives the name `"unknown (XX)"`), Shad0w-style ids,
/// mainline-style ids, and a number of one-off schemes. Returns `None` for
/// an id that follows none of them, including all-zero ids. Never panics,
/// whatever the bytes, and the text it returns never holds control
/// characters. For example `identify(b"-qB4620-abcdefghijkl")` gives a
/// [`ClientInfo`] that displays as `qBittorrent 4.6.2`.
#[must_use]
pub fn identify(id: &[u8]) -> Option<ClientInfo> {
    let bytes: &[u8; PEER_ID_LEN] = id.try_into().ok()?;
    let id = Raw(bytes);
    if bytes.iter().all(|&b| b == 0) {
        return None;
    }
    one_off(id)
        .or_else(|| azureus(id))
        .or_else(|| mainline(id))
        .or_else(|| shad0w(id))
        .or_else(|| binary(id))
}

/// Panic-free access to the bytes of a peer id.
#[derive(Clone, Copy)]
struct Raw<'a>(&'a [u8; PEER_ID_LEN]);

impl<'a> Raw<'a> {
    /// The byte at `i` (0 past the end, which callers never reach).
    fn at(self, i: usize) -> u8 {
        self.0.get(i).copied().unwrap_or(0)
    }

    /// `len` bytes from `start`, or an empty slice if that runs past the end.
    fn span(self, start: usize, len: usize) -> &'a [u8] {
        self.0
            .get(start..start.saturating_add(len))
            .unwrap_or_default()
    }

    /// Everything from `start` on.
    fn tail_from(self, start: usize) -> &'a [u8] {
        self.0.get(start..).unwrap_or_default()
    }

    fn starts_with(self, prefix: &[u8]) -> bool {
        self.0.starts_with(prefix)
    }

    /// Whether `s` occurs at `offset`.
    fn has_at(self, offset: usize, s: &[u8]) -> bool {
        self.tail_from(offset).starts_with(s)
    }
}

// ---------------------------------------------------------------------------
// Digit helpers
// ---------------------------------------------------------------------------

/// Value of a version character in the alphabet
/// `0-9` (0-9), `A-Z` (10-35), `a-z` (36-61), `.` (62) used by libtorrent,
/// BitTornado, Transmission and others.
fn base64_digit(c: u8) -> Option<u32> {
    match c {
        b'0'..=b'9' => Some(u32::from(c - b'0')),
        b'A'..=b'Z' => Some(u32::from(c - b'A') + 10),
        b'a'..=b'z' => Some(u32::from(c - b'a') + 36),
        b'.' => Some(62),
        _ => None,
    }
}

/// A version character as a decimal number, `x` if it is not one.
fn digit(c: u8) -> String {
    base64_digit(c).map_or_else(|| "x".to_owned(), |n| n.to_string())
}

/// A hexadecimal version character as a decimal number, `x` if it is not one.
fn hex_digit(c: u8) -> String {
    char::from(c)
        .to_digit(16)
        .map_or_else(|| "x".to_owned(), |n| n.to_string())
}

/// A byte shown as itself if it is an ASCII letter or digit, `x` otherwise.
fn raw(c: u8) -> char {
    if c.is_ascii_alphanumeric() {
        char::from(c)
    } else {
        'x'
    }
}

/// A run of 1 to 9 ASCII digits read as a decimal number.
fn decimal(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || bytes.len() > 9 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        bytes
            .iter()
            .fold(0u32, |n, &b| n * 10 + u32::from(b - b'0')),
    )
}

/// `decimal`, or `x` when the bytes are not digits.
fn decimal_or_x(bytes: &[u8]) -> String {
    decimal(bytes).map_or_else(|| "x".to_owned(), |n| n.to_string())
}

/// The release marker µTorrent, Transmission and XBT put after the digits.
fn release_suffix(c: u8) -> &'static str {
    match c {
        b'b' | b'B' => " (Beta)",
        b'd' => " (Debug)",
        b'x' | b'X' | b'Z' => " (Dev)",
        _ => "",
    }
}

/// Leading bytes that are ASCII digits or dots, as text without a
/// trailing dot.
fn dotted_digits(bytes: &[u8]) -> String {
    let s: String = bytes
        .iter()
        .take_while(|b| b.is_ascii_digit() || **b == b'.')
        .map(|&b| char::from(b))
        .collect();
    s.trim_end_matches('.').to_owned()
}

/// Parses `count` decimal numbers of 1 to 3 digits, each followed by `-`,
/// from the start of `bytes` (the tail of `M7-10-2-` or `A2-1-36-0-`).
fn dash_numbers(bytes: &[u8], count: usize) -> Option<Vec<u32>> {
    let mut out = Vec::with_capacity(count);
    let mut rest = bytes;
    for _ in 0..count {
        let len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if len == 0 || len > 3 {
            return None;
        }
        out.push(decimal(rest.get(..len)?)?);
        match rest.get(len..)? {
            [b'-', more @ ..] => rest = more,
            _ => return None,
        }
    }
    Some(out)
}

fn join_dotted(numbers: &[u32]) -> String {
    numbers
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

// ---------------------------------------------------------------------------
// Azureus style: -XXvvvv-
// ---------------------------------------------------------------------------

/// How a client writes its version into the four characters after the
/// Azureus code (bytes 3 to 6; some clients also use byte 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    /// No version is carried.
    NoVersion,
    /// `a.b.c` (libtorrent-based clients); a fourth non-zero digit is
    /// appended as `.d`.
    Three,
    /// `a.b.c.d`, every character a digit of the `0-9A-Za-z` alphabet.
    Four,
    /// Two decimal digits of major, two of minor: `0241` is 2.41.
    TwoTwo,
    /// FlashGet: as `TwoTwo`, but the id has no trailing dash.
    FlashGet,
    /// WebTorrent: two decimal digits each of major and minor, `0102` is 1.2.
    WebTorrent,
    /// Transmission's three successive schemes.
    Transmission,
    /// Deluge: `a.b.c` and a release letter.
    Deluge,
    /// µTorrent family: hexadecimal `a.b.c` and a release letter.
    UTorrent,
    /// KTorrent: `a.b.c`, or `a.b Dev n` / `a.b RC n`.
    KTorrent,
    /// PicoTorrent: `a.bb.c`.
    Pico,
    /// Xtorrent: `a.b (build)`.
    Xtorrent,
    /// BitBuddy: `a.bcd`.
    BitBuddy,
    /// BitLord: `a.b.c-ddd`, running over the trailing dash.
    BitLord,
    /// BitRocket: `a.b (cd)`.
    BitRocket,
    /// CTorrent: `a.b.cd`.
    CTorrent,
    /// Folx: major only.
    Folx,
    /// MediaGet: `a.b`.
    MediaGet,
    /// Xfplay: `a.b.c`, or `a.b.cd` when the fourth character is not `0`.
    Xfplay,
}

impl Style {
    /// Whether ids of this style may have something other than `-` at byte 7.
    fn may_overrun(self) -> bool {
        matches!(self, Style::UTorrent | Style::BitLord | Style::FlashGet)
    }

    fn version(self, id: Raw<'_>) -> String {
        let [a, b, c, d] = [id.at(3), id.at(4), id.at(5), id.at(6)];
        match self {
            Style::NoVersion => String::new(),
            Style::Three => {
                let v = format!("{}.{}.{}", digit(a), digit(b), digit(c));
                match base64_digit(d) {
                    Some(n @ 1..) => format!("{v}.{n}"),
                    _ => v,
                }
            }
            Style::Four => format!("{}.{}.{}.{}", digit(a), digit(b), digit(c), digit(d)),
            Style::TwoTwo | Style::FlashGet => {
                match (decimal(id.span(3, 2)), decimal(id.span(5, 2))) {
                    (Some(major), Some(minor)) => format!("{major}.{minor:02}"),
                    _ => String::new(),
                }
            }
            Style::WebTorrent => match (decimal(id.span(3, 2)), decimal(id.span(5, 2))) {
                (Some(major), Some(minor)) => format!("{major}.{minor}"),
                _ => String::new(),
            },
            Style::Transmission => transmission_version(id),
            Style::Deluge => {
                let release = match d {
                    b's' => String::new(),
                    b'D' | b'd' => " (Dev)".to_owned(),
                    b'a' => " (Alpha)".to_owned(),
                    b'b' => " (Beta)".to_owned(),
                    b'r' => " (RC)".to_owned(),
                    _ => match base64_digit(d) {
                        Some(n @ 1..) => format!(".{n}"),
                        _ => String::new(),
                    },
                };
                format!("{}.{}.{}{release}", digit(a), digit(b), digit(c))
            }
            Style::UTorrent => {
                if id.at(7) == b'-' {
                    format!(
                        "{}.{}.{}{}",
                        hex_digit(a),
                        hex_digit(b),
                        hex_digit(c),
                        release_suffix(d)
                    )
                } else {
                    // Longer versions take a two-digit revision and push
                    // the release letter over the trailing dash.
                    format!(
                        "{}.{}.{}{}",
                        hex_digit(a),
                        hex_digit(b),
                        decimal_or_x(id.span(5, 2)),
                        release_suffix(id.at(7))
                    )
                }
            }
            Style::KTorrent => match c {
                b'D' => format!("{}.{} Dev {}", digit(a), digit(b), digit(d)),
                b'R' => format!("{}.{} RC {}", digit(a), digit(b), digit(d)),
                _ => Style::Three.version(id),
            },
            Style::Pico => format!("{}.{}{}.{}", digit(a), raw(b), raw(c), digit(d)),
            Style::Xtorrent => format!(
                "{}.{} ({})",
                digit(a),
                digit(b),
                decimal_or_x(id.span(5, 2))
            ),
            Style::BitBuddy => format!("{}.{}{}{}", raw(a), raw(b), raw(c), raw(d)),
            Style::BitLord => format!(
                "{}.{}.{}-{}{}{}",
                raw(a),
                raw(b),
                raw(c),
                raw(d),
                raw(id.at(7)),
                raw(id.at(8))
            ),
            Style::BitRocket => format!("{}.{} ({}{})", raw(a), raw(b), raw(c), raw(d)),
            Style::CTorrent => format!("{}.{}.{}{}", digit(a), digit(b), raw(c), raw(d)),
            Style::Folx => format!("{}.x", digit(a)),
            Style::MediaGet => format!("{}.{}", digit(a), digit(b)),
            Style::Xfplay => {
                if d == b'0' {
                    format!("{}.{}.{}", digit(a), digit(b), digit(c))
                } else {
                    format!("{}.{}.{}{}", raw(a), raw(b), raw(c), raw(d))
                }
            }
        }
    }
}

/// Transmission has changed its scheme three times:
/// `-TR0006-` is 0.6, `-TR0072-` is 0.72, `-TR111Z-` is 1.11 (Dev) and
/// `-TR3000-` is 3.00 (one major digit, two minor digits, release letter),
/// and from 4.0 on `-TR4060-` is 4.0.6 (major, minor, patch, release letter).
fn transmission_version(id: Raw<'_>) -> String {
    let [a, b, c, d] = [id.at(3), id.at(4), id.at(5), id.at(6)];
    if [a, b, c] == *b"000" {
        format!("0.{}", raw(d))
    } else if [a, b] == *b"00" {
        match decimal(id.span(5, 2)) {
            Some(minor) => format!("0.{minor:02}"),
            None => "0.x".to_owned(),
        }
    } else if a <= b'3' {
        let minor = decimal(id.span(4, 2)).map_or_else(|| "x".to_owned(), |n| format!("{n:02}"));
        format!("{}.{minor}{}", digit(a), release_suffix(d))
    } else {
        format!(
            "{}.{}.{}{}",
            digit(a),
            digit(b),
            digit(c),
            release_suffix(d)
        )
    }
}

/// Azureus-style client codes, their names and version encodings.
const AZUREUS_CLIENTS: &[(&[u8; 2], &str, Style)] = &[
    (b"7T", "aTorrent", Style::Four),
    (b"AB", "AnyEvent::BitTorrent", Style::Four),
    (b"AD", "Advanced Download Manager", Style::Three),
    (b"AG", "Ares", Style::Four),
    (b"A~", "Ares", Style::Three),
    (b"AR", "Arctic Torrent", Style::Four),
    (b"AT", "Artemis", Style::Four),
    (b"AV", "Avicora", Style::Four),
    (b"AX", "BitPump", Style::TwoTwo),
    (b"AZ", "Azureus/Vuze", Style::Four),
    (b"BB", "BitBuddy", Style::BitBuddy),
    (b"BC", "BitComet", Style::TwoTwo),
    (b"BE", "BitTorrent SDK", Style::Four),
    (b"BF", "Bitflu", Style::NoVersion),
    (b"BG", "BTG", Style::Four),
    (b"BH", "BitZilla", Style::Four),
    (b"BI", "BiglyBT", Style::Four),
    (b"BL", "BitLord", Style::BitLord),
    (b"BM", "BitMagnet", Style::Four),
    (b"BN", "Baidu Netdisk", Style::NoVersion),
    (b"BP", "BitTorrent Pro", Style::Four),
    (b"BR", "BitRocket", Style::BitRocket),
    (b"BS", "BTSlave", Style::Four),
    (b"BT", "BitTorrent", Style::UTorrent),
    (b"BW", "BitTorrent Web", Style::UTorrent),
    (b"BX", "BitTorrent X", Style::Four),
    (b"CD", "Enhanced CTorrent", Style::TwoTwo),
    (b"CT", "CTorrent", Style::CTorrent),
    (b"DE", "Deluge", Style::Deluge),
    (b"DP", "Propagate Data Client", Style::Four),
    (b"EB", "EBit", Style::Four),
    (b"ES", "Electric Sheep", Style::Three),
    (b"FC", "FileCroc", Style::Four),
    (b"FD", "Free Download Manager", Style::Three),
    (b"FG", "FlashGet", Style::FlashGet),
    (b"FL", "Folx", Style::Folx),
    (b"FT", "FoxTorrent", Style::Four),
    (b"FW", "FrostWire", Style::Three),
    (b"FX", "Freebox BitTorrent", Style::Four),
    (b"GR", "GetRight", Style::Four),
    (b"GS", "GSTorrent", Style::Four),
    (b"HK", "Hekate", Style::Four),
    (b"HL", "Halite", Style::Three),
    (b"HN", "Hydranode", Style::Four),
    (b"IL", "iLivid", Style::Four),
    (b"JS", "JSTorrent", Style::Three),
    (b"KG", "KGet", Style::Four),
    (b"KT", "KTorrent", Style::KTorrent),
    (b"LC", "LeechCraft", Style::Four),
    (b"LH", "LH-ABC", Style::Four),
    (b"LK", "Linkage", Style::Four),
    (b"LP", "Lphant", Style::TwoTwo),
    (b"LT", "libtorrent", Style::Three),
    (b"LW", "LimeWire", Style::NoVersion),
    (b"Lr", "LibreTorrent", Style::Three),
    (b"MG", "MediaGet", Style::MediaGet),
    (b"MK", "Meerkat", Style::Four),
    (b"ML", "MLDonkey", Style::Four),
    (b"MO", "MonoTorrent", Style::Four),
    (b"MP", "MooPolice", Style::Three),
    (b"MR", "Miro", Style::Four),
    (b"MT", "Moonlight", Style::Four),
    (b"NE", "BT Next Evolution", Style::Four),
    (b"NX", "Net Transport", Style::Four),
    (b"OS", "OneSwarm", Style::Four),
    (b"OT", "OmegaTorrent", Style::Four),
    (b"PD", "Pando", Style::Four),
    (b"PI", "PicoTorrent", Style::Pico),
    (b"QD", "QQDownload", Style::Four),
    (b"QT", "Qt 4 Torrent example", Style::Four),
    (b"RS", "Rufus", Style::Four),
    (b"RT", "Retriever", Style::Four),
    (b"RV", "rivulet", Style::Three),
    (b"RZ", "RezTorrent", Style::Four),
    (b"SB", "Swiftbit", Style::Four),
    (b"SD", "Thunder", Style::Four),
    (b"SK", "spark", Style::Four),
    (b"SM", "SoMud", Style::Four),
    (b"SN", "ShareNET", Style::Four),
    (b"SP", "BitSpirit", Style::Three),
    (b"SS", "SwarmScope", Style::Four),
    (b"ST", "SymTorrent", Style::Four),
    (b"SZ", "Shareaza", Style::Four),
    (b"S~", "Shareaza (beta)", Style::Four),
    (b"TB", "Torch Browser", Style::NoVersion),
    (b"TL", "Tribler", Style::Four),
    (b"TN", "Torrent.NET", Style::Four),
    (b"TR", "Transmission", Style::Transmission),
    (b"TS", "TorrentStorm", Style::Four),
    (b"TT", "TuoTu", Style::Four),
    (b"UE", "µTorrent Embedded", Style::UTorrent),
    (b"UL", "uLeecher!", Style::Four),
    (b"UM", "µTorrent Mac", Style::UTorrent),
    (b"UT", "µTorrent", Style::UTorrent),
    (b"UW", "µTorrent Web", Style::UTorrent),
    (b"VG", "Vagaa", Style::Four),
    (b"WD", "WebTorrent Desktop", Style::WebTorrent),
    (b"WS", "HTTP Seed", Style::NoVersion),
    (b"WT", "BitLet", Style::Four),
    (b"WW", "WebTorrent", Style::WebTorrent),
    (b"WY", "FireTorrent", Style::Four),
    (b"XC", "Xtorrent", Style::Xtorrent),
    (b"XF", "Xfplay", Style::Xfplay),
    (b"XL", "Xunlei", Style::Four),
    (b"XS", "XSwifter", Style::Four),
    (b"XT", "XanTorrent", Style::Four),
    (b"XX", "Xtorrent", Style::Xtorrent),
    (b"ZO", "Zona", Style::Four),
    (b"ZT", "ZipTorrent", Style::Four),
    (b"bk", "BitKitten", Style::Four),
    (b"lt", "libTorrent (rTorrent)", Style::Three),
    (b"pb", "pbTorrent", Style::Three),
    (b"qB", "qBittorrent", Style::Three),
    (b"rQ", "rqbit", Style::Three),
    (b"st", "SharkTorrent", Style::Four),
];

fn azureus(id: Raw<'_>) -> Option<ClientInfo> {
    if id.at(0) != b'-' {
        return None;
    }
    let code = [id.at(1), id.at(2)];
    if let Some(&(_, name, style)) = AZUREUS_CLIENTS.iter().find(|(c, _, _)| **c == code) {
        return (id.at(7) == b'-' || style.may_overrun())
            .then(|| ClientInfo::new(name, style.version(id)));
    }
    // An unlisted code: accept only a well-formed id.
    let code_ok = code.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'~');
    let version = id.span(3, 4);
    let version_ok = version.iter().all(|&c| base64_digit(c).is_some());
    if !(code_ok && version_ok && id.at(7) == b'-') {
        return None;
    }
    let name = format!("unknown ({}{})", char::from(code[0]), char::from(code[1]));
    let digits: Vec<u32> = version.iter().filter_map(|&c| base64_digit(c)).collect();
    Some(ClientInfo::new(name, join_dotted(&digits)))
}

// ---------------------------------------------------------------------------
// Mainline style: M7-10-2-, Q1-10-0-, A2-1-36-0-
// ---------------------------------------------------------------------------

fn mainline(id: Raw<'_>) -> Option<ClientInfo> {
    let (name, start) = match id.span(0, 3) {
        [b'M', ..] => ("BitTorrent", 1),
        [b'Q', ..] => ("Queen Bee", 1),
        b"A2-" => ("aria2", 3),
        b"S3-" => ("Amazon S3", 3),
        _ => return None,
    };
    let numbers = dash_numbers(id.tail_from(start), 3)?;
    Some(ClientInfo::new(name, join_dotted(&numbers)))
}

// ---------------------------------------------------------------------------
// Shad0w style: T03I-----, S58B-----
// ---------------------------------------------------------------------------

fn shad0w(id: Raw<'_>) -> Option<ClientInfo> {
    let name = match id.at(0) {
        b'A' => "ABC",
        b'O' => "Osprey Permaseed",
        b'Q' => "BTQueue",
        b'R' => "Tribler",
        b'S' => "Shad0w",
        b'T' => "BitTornado",
        b'U' => "UPnP NAT Bit Torrent",
        _ => return None,
    };
    // Bytes 1..6: three to five version characters, then dash padding.
    let header = id.span(1, 5);
    let digits: Vec<u32> = header.iter().map_while(|&c| base64_digit(c)).collect();
    if digits.len() < 3 {
        return None;
    }
    let padding = header.get(digits.len()..).unwrap_or_default();
    if !padding.iter().all(|&c| c == b'-') {
        return None;
    }
    // Bytes 6..9: `---` for a single-torrent client, `-T-` for a tracker,
    // or a counter in the version alphabet for multi-torrent clients (only
    // believed when the header was padded, so that random letters do not
    // pass for a version).
    let tail = id.span(6, 3);
    let tail_ok = tail == b"---"
        || tail == b"-T-"
        || (!padding.is_empty() && tail.iter().all(|&c| base64_digit(c).is_some()));
    tail_ok.then(|| ClientInfo::new(name, join_dotted(&digits)))
}

// ---------------------------------------------------------------------------
// One-off schemes, tried first
// ---------------------------------------------------------------------------

/// Fixed markers at a given offset that name a client without a version.
const MARKERS: &[(usize, &[u8], &str)] = &[
    (0, b"AZ2500BT", "BitTyrant"),
    (0, b"Deadman Walking-", "Deadman Walking"),
    (0, b"BTDWV-", "Deadman Walking"),
    (0, b"DansClient", "XanTorrent"),
    (4, b"btfans", "SimpleBT"),
    (0, b"PRC.P---", "BitTorrent Plus! II"),
    (0, b"P87.P---", "BitTorrent Plus!"),
    (0, b"S587Plus", "BitTorrent Plus!"),
    (0, b"Plus---", "BitTorrent Plus"),
    (0, b"martini", "Martini Man"),
    (0, b"a00---0", "Swarmy"),
    (0, b"a02---0", "Swarmy"),
    (0, b"T00---0", "Teeweety"),
    (0, b"Pando", "Pando"),
    (0, b"LIME", "LimeWire"),
    (0, b"btuga", "BTugaXP"),
    (0, b"oernu", "BTugaXP"),
    (0, b"PEERAPP", "PeerApp"),
    (0, b"-Qt-", "Qt 4 Torrent example"),
    (0, b"-G3", "G3 Torrent"),
    (0, b"-WT-", "BitLet"),
    (0, b"346-", "TorrentTopia"),
    (0, b"10-------", "JVtorrent"),
    (0, b"BLZ", "Blizzard Downloader"),
    (0, b"aria2-", "aria2"),
    (0, b"eX", "eXeem"),
];

fn one_off(id: Raw<'_>) -> Option<ClientInfo> {
    if let Some(&(_, _, name)) = MARKERS
        .iter()
        .find(|(offset, marker, _)| id.has_at(*offset, marker))
    {
        return Some(ClientInfo::new(name, ""));
    }

    // BitComet before 0.59 and BitLord: `exbc` + two version bytes
    // (x.yy); BitLord adds `LORD`. `FUTB` and `xUTB` are modded BitComets.
    let bitcomet = match id.span(0, 4) {
        b"exbc" => Some("BitComet"),
        b"FUTB" => Some("BitComet (Solidox Mod)"),
        b"xUTB" => Some("BitComet (Mod 2)"),
        _ => None,
    };
    if let Some(name) = bitcomet {
        let name = if id.has_at(6, b"LORD") {
            "BitLord"
        } else {
            name
        };
        return Some(ClientInfo::new(
            name,
            format!("{}.{:02}", id.at(4), id.at(5)),
        ));
    }

    // Bits on Wheels: -BOWxxx-; A0B is 1.0.5, A0C is 1.0.6.
    if id.starts_with(b"-BOW") && id.at(7) == b'-' {
        let version = match id.span(4, 3) {
            b"A0B" => "1.0.5".to_owned(),
            b"A0C" => "1.0.6".to_owned(),
            _ => format!("{}.{}.{}", raw(id.at(4)), raw(id.at(5)), raw(id.at(6))),
        };
        return Some(ClientInfo::new("Bits on Wheels", version));
    }

    // MLDonkey: -ML2.7.2-
    if id.starts_with(b"-ML") {
        let version = dotted_digits(id.tail_from(3));
        let end = id.at(3 + version.len());
        if version.contains('.') && end == b'-' {
            return Some(ClientInfo::new("MLDonkey", version));
        }
    }

    // XBT Client: XBT + three digits + `d` (debug) or `-`, then `-`.
    if id.starts_with(b"XBT")
        && id.span(3, 3).iter().all(u8::is_ascii_digit)
        && matches!(id.at(6), b'-' | b'd')
    {
        let version = format!(
            "{}.{}.{}{}",
            raw(id.at(3)),
            raw(id.at(4)),
            raw(id.at(5)),
            release_suffix(id.at(6))
        );
        return Some(ClientInfo::new("XBT Client", version));
    }

    // Tixati: TIX + two digits of major, two of minor.
    if id.starts_with(b"TIX") {
        if let (Some(major), Some(minor)) = (decimal(id.span(3, 2)), decimal(id.span(5, 2))) {
            return Some(ClientInfo::new("Tixati", format!("{major}.{minor:02}")));
        }
    }

    // Opera: OP + four-digit build number.
    if id.starts_with(b"OP") && decimal(id.span(2, 4)).is_some() {
        let build: String = id.span(2, 4).iter().map(|&b| char::from(b)).collect();
        return Some(ClientInfo::new("Opera", build));
    }

    // BitTorrent DNA: DNA + three two-digit numbers.
    if id.starts_with(b"DNA") {
        if let (Some(a), Some(b), Some(c)) = (
            decimal(id.span(3, 2)),
            decimal(id.span(5, 2)),
            decimal(id.span(7, 2)),
        ) {
            return Some(ClientInfo::new("BitTorrent DNA", format!("{a}.{b}.{c}")));
        }
    }

    // Plus!: Plus + a.bc
    if id.starts_with(b"Plus") {
        let version = if id.span(4, 3).iter().all(u8::is_ascii_digit) {
            format!("{}.{}{}", raw(id.at(4)), raw(id.at(5)), raw(id.at(6)))
        } else {
            String::new()
        };
        return Some(ClientInfo::new("Plus!", version));
    }

    // Burst!: Mbrst + a-b-c
    if id.starts_with(b"Mbrst") {
        let version = dash_numbers(id.tail_from(5), 2)
            .zip(decimal(id.span(9, 1)))
            .map(|(ab, c)| format!("{}.{c}", join_dotted(&ab)))
            .unwrap_or_default();
        return Some(ClientInfo::new("Burst!", version));
    }

    // QVOD: QVOD + four version characters.
    if id.starts_with(b"QVOD") {
        let version = format!(
            "{}.{}.{}.{}",
            digit(id.at(4)),
            digit(id.at(5)),
            digit(id.at(6)),
            digit(id.at(7))
        );
        return Some(ClientInfo::new("QVOD", version));
    }

    // BitTorrent Protocol Daemon: btpd/ + version.
    if id.starts_with(b"btpd") {
        let version = if id.at(4) == b'/' {
            dotted_digits(id.tail_from(5))
        } else {
            String::new()
        };
        return Some(ClientInfo::new("BT Protocol Daemon", version));
    }

    // TurboBT: turbobt + optional dotted version.
    if id.starts_with(b"turbobt") {
        return Some(ClientInfo::new("TurboBT", dotted_digits(id.tail_from(7))));
    }

    // Free Download Manager 6 dropped the Azureus style for FD6 + random.
    if id.starts_with(b"FD6") {
        return Some(ClientInfo::new("Free Download Manager", "6"));
    }

    None
}

// ---------------------------------------------------------------------------
// Binary schemes, tried last
// ---------------------------------------------------------------------------

fn binary(id: Raw<'_>) -> Option<ClientInfo> {
    // BitSpirit: \0, major version byte, "BS".
    if id.at(0) == 0 && id.span(2, 2) == b"BS" {
        let major = match id.at(1) {
            0 => 1,
            n => n,
        };
        return Some(ClientInfo::new("BitSpirit", major.to_string()));
    }
    // Bram's "experimental" builds: twelve zero bytes, then a marker.
    if id.span(0, 12).iter().all(|&b| b == 0) {
        match id.at(12) {
            0x97 => return Some(ClientInfo::new("Experimental", "3.2.1b2")),
            0 => return Some(ClientInfo::new("Experimental", "3.1")),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// Pads `prefix` to 20 bytes with a fixed random-looking tail.
    fn id_from(prefix: &[u8]) -> [u8; 20] {
        const TAIL: &[u8; 20] = b"k3J9qZ0pLx7mW2vB5nR8";
        let mut id = *TAIL;
        id[..prefix.len()].copy_from_slice(prefix);
        id
    }

    fn name_of(prefix: &[u8]) -> Option<String> {
        identify(&id_from(prefix)).map(|c| c.to_string())
    }

    #[test]
    fn azureus_style_clients() {
        let cases: &[(&[u8], &str)] = &[
            (b"-qB4620-", "qBittorrent 4.6.2"),
            (b"-qB5010-", "qBittorrent 5.0.1"),
            (b"-qB41A0-", "qBittorrent 4.1.10"),
            (b"-LT2090-", "libtorrent 2.0.9"),
            (b"-LT1B10-", "libtorrent 1.11.1"),
            (b"-LT0GJ0-", "libtorrent 0.16.19"),
            (b"-lt0D80-", "libTorrent (rTorrent) 0.13.8"),
            (b"-lt0F10-", "libTorrent (rTorrent) 0.15.1"),
            (b"-TR3000-", "Transmission 3.00"),
            (b"-TR2920-", "Transmission 2.92"),
            (b"-TR2940-", "Transmission 2.94"),
            (b"-TR111Z-", "Transmission 1.11 (Dev)"),
            (b"-TR0072-", "Transmission 0.72"),
            (b"-TR0006-", "Transmission 0.6"),
            (b"-TR4060-", "Transmission 4.0.6"),
            (b"-TR4000-", "Transmission 4.0.0"),
            (b"-TR400B-", "Transmission 4.0.0 (Beta)"),
            (b"-TR4Az0-", "Transmission 4.10.61"),
            (b"-UT355W-", "µTorrent 3.5.5"),
            (b"-UT341\0-", "µTorrent 3.4.1"),
            (b"-UT7a5\0-", "µTorrent 7.10.5"),
            (b"-UT221B-", "µTorrent 2.2.1 (Beta)"),
            (b"-UM1870-", "µTorrent Mac 1.8.7"),
            (b"-UE3500-", "µTorrent Embedded 3.5.0"),
            (b"-UW1110Q", "µTorrent Web 1.1.10"),
            (b"-UW110Q-", "µTorrent Web 1.1.0"),
            (b"-BT791B-", "BitTorrent 7.9.1 (Beta)"),
            (b"-BT7a5\0-", "BitTorrent 7.10.5"),
            (b"-BW1293-", "BitTorrent Web 1.2.9"),
            (b"-DE211s-", "Deluge 2.1.1"),
            (b"-DE13F0-", "Deluge 1.3.15"),
            (b"-DE200D-", "Deluge 2.0.0 (Dev)"),
            (b"-DE201b-", "Deluge 2.0.1 (Beta)"),
            (b"-AZ5760-", "Azureus/Vuze 5.7.6.0"),
            (b"-AZ2060-", "Azureus/Vuze 2.0.6.0"),
            (b"-BI3600-", "BiglyBT 3.6.0.0"),
            (b"-BC0241-", "BitComet 2.41"),
            (b"-BC0098-", "BitComet 0.98"),
            (b"-KT5110-", "KTorrent 5.1.1"),
            (b"-KT33D1-", "KTorrent 3.3 Dev 1"),
            (b"-KT22R2-", "KTorrent 2.2 RC 2"),
            (b"-WW0102-", "WebTorrent 1.2"),
            (b"-WW0016-", "WebTorrent 0.16"),
            (b"-WW0208-", "WebTorrent 2.8"),
            (b"-WD0024-", "WebTorrent Desktop 0.24"),
            (b"-RV0100-", "rivulet 0.1.0"),
            (b"-rQ8000-", "rqbit 8.0.0"),
            (b"-rQ0001-", "rqbit 0.0.0.1"),
            (b"-PI0091-", "PicoTorrent 0.09.1"),
            (b"-PI0120-", "PicoTorrent 0.12.0"),
            (b"-FD51R\xFF-", "Free Download Manager 5.1.27"),
            (b"-FD51@\xFF-", "Free Download Manager 5.1.x"),
            (b"-FW6830-", "FrostWire 6.8.3"),
            (b"-HL0290-", "Halite 0.2.9"),
            (b"-MO3000-", "MonoTorrent 3.0.0.0"),
            (b"-SD0100-", "Thunder 0.1.0.0"),
            (b"-XL0012-", "Xunlei 0.0.1.2"),
            (b"-AG2053-", "Ares 2.0.5.3"),
            (b"-A~0101-", "Ares 0.1.0.1"),
            (b"-AR1000-", "Arctic Torrent 1.0.0.0"),
            (b"-BB1035-", "BitBuddy 1.035"),
            (b"-CD0302-", "Enhanced CTorrent 3.02"),
            (b"-CT1204-", "CTorrent 1.2.04"),
            (b"-KG2320-", "KGet 2.3.2.0"),
            (b"-LP0302-", "Lphant 3.02"),
            (b"-LW0001-", "LimeWire"),
            (b"-BF0100-", "Bitflu"),
            (b"-BL246326", "BitLord 2.4.6-326"),
            (b"-FG0180ab", "FlashGet 1.80"),
            (b"-XX0025-", "Xtorrent 0.0 (25)"),
            (b"-XF9990-", "Xfplay 9.9.9"),
            (b"-XF9992-", "Xfplay 9.9.92"),
            (b"-HN0001-", "Hydranode 0.0.0.1"),
            (b"-TT2100-", "TuoTu 2.1.0.0"),
            (b"-GR6300-", "GetRight 6.3.0.0"),
            (b"-SZ2210-", "Shareaza 2.2.1.0"),
            (b"-IL0100-", "iLivid 0.1.0.0"),
            (b"-PD1000-", "Pando 1.0.0.0"),
            (b"-WY0300-", "FireTorrent 0.3.0.0"),
            (b"-FX1000-", "Freebox BitTorrent 1.0.0.0"),
            (b"-SP3605-", "BitSpirit 3.6.0.5"),
            (b"-MG1210-", "MediaGet 1.2"),
            (b"-FL51FF-", "Folx 5.x"),
            (b"-Lr10X0-", "LibreTorrent 1.0.33"),
            (b"-WS1000-", "HTTP Seed"),
            (b"-ZZ1234-", "unknown (ZZ) 1.2.3.4"),
            (b"-x~0A0b-", "unknown (x~) 0.10.0.37"),
        ];
        for (prefix, expected) in cases {
            assert_eq!(
                name_of(prefix).as_deref(),
                Some(*expected),
                "{}",
                String::from_utf8_lossy(prefix)
            );
        }
    }

    #[test]
    fn mainline_style_clients() {
        let cases: &[(&[u8], &str)] = &[
            (b"M4-4-0--", "BitTorrent 4.4.0"),
            (b"M4-3-6--", "BitTorrent 4.3.6"),
            (b"M4-20-8-", "BitTorrent 4.20.8"),
            (b"M7-10-2--", "BitTorrent 7.10.2"),
            (b"Q1-10-0-", "Queen Bee 1.10.0"),
            (b"Q1-0-0--", "Queen Bee 1.0.0"),
            (b"Q1-23-4-", "Queen Bee 1.23.4"),
            (b"A2-1-36-0-", "aria2 1.36.0"),
            (b"A2-1-18-8-", "aria2 1.18.8"),
            (b"A2-1-2-0-", "aria2 1.2.0"),
            (b"aria2-", "aria2"),
        ];
        for (prefix, expected) in cases {
            assert_eq!(name_of(prefix).as_deref(), Some(*expected));
        }
    }

    #[test]
    fn shad0w_style_clients() {
        let cases: &[(&[u8], &str)] = &[
            (b"S58B-----", "Shad0w 5.8.11"),
            (b"T03I-----", "BitTornado 0.3.18"),
            (b"T03H-----", "BitTornado 0.3.17"),
            (b"T03A0-000", "BitTornado 0.3.10.0"),
            (b"T03I---T-", "BitTornado 0.3.18"),
            (b"A310-----", "ABC 3.1.0"),
            (b"R351-----", "Tribler 3.5.1"),
            (b"O0B2-----", "Osprey Permaseed 0.11.2"),
            (b"Q001-----", "BTQueue 0.0.1"),
            (b"U801-----", "UPnP NAT Bit Torrent 8.0.1"),
        ];
        for (prefix, expected) in cases {
            assert_eq!(name_of(prefix).as_deref(), Some(*expected));
        }
        // Too few version characters, or no padding and a random tail.
        assert_eq!(name_of(b"T03------"), None);
        assert_eq!(name_of(b"T03I5k3J9q"), None);
    }

    #[test]
    fn one_off_schemes() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"\x65\x78\x62\x63\x00\x38\x4C\x4F\x52\x44\x32\x00\x04\x8E",
                "BitLord 0.56",
            ),
            (
                b"\x65\x78\x62\x63\x00\x38\x7A\x44\x63\x10\x2D\x6E\x9A\xD6",
                "BitComet 0.56",
            ),
            (b"FUTB\x00\x3a", "BitComet (Solidox Mod) 0.58"),
            (b"XBT054d-", "XBT Client 0.5.4 (Debug)"),
            (b"XBT080--", "XBT Client 0.8.0"),
            (b"OP7685", "Opera 7685"),
            (b"TIX0193-", "Tixati 1.93"),
            (b"TIX0289-", "Tixati 2.89"),
            (b"-ML2.7.2-kgjjfkd", "MLDonkey 2.7.2"),
            (b"-BOWA0C-", "Bits on Wheels 1.0.6"),
            (b"-BOWA0B-", "Bits on Wheels 1.0.5"),
            (b"-G3Nickname", "G3 Torrent"),
            (b"AZ2500BT", "BitTyrant"),
            (b"Plus123", "Plus! 1.23"),
            (b"Plus---", "BitTorrent Plus"),
            (b"turbobt", "TurboBT"),
            (b"btpd/0.16-", "BT Protocol Daemon 0.16"),
            (b"DNA010203", "BitTorrent DNA 1.2.3"),
            (b"Pando-", "Pando"),
            (b"LIME", "LimeWire"),
            (b"eXusername", "eXeem"),
            (b"346------", "TorrentTopia"),
            (b"Deadman Walking-", "Deadman Walking"),
            (b"QVOD0054", "QVOD 0.0.5.4"),
            (b"FD6k4SYy9BOU4U4rk3-J", "Free Download Manager 6"),
            (b"-WT-", "BitLet"),
            (b"\x00\x03BS", "BitSpirit 3"),
        ];
        for (prefix, expected) in cases {
            assert_eq!(
                name_of(prefix).as_deref(),
                Some(*expected),
                "{}",
                String::from_utf8_lossy(prefix)
            );
        }
    }

    #[test]
    fn client_info_display() {
        assert_eq!(
            ClientInfo::new("qBittorrent", "4.6.2").to_string(),
            "qBittorrent 4.6.2"
        );
        assert_eq!(ClientInfo::new("LimeWire", "").to_string(), "LimeWire");
        let info = identify(&id_from(b"-qB4620-")).unwrap();
        assert_eq!(info.name, "qBittorrent");
        assert_eq!(info.version, "4.6.2");
    }

    #[test]
    fn generated_id_has_our_prefix_and_alphanumeric_tail() {
        let a = PeerId::generate();
        let b = PeerId::generate();
        assert_ne!(a, b);
        for id in [a, b] {
            assert_eq!(&id.as_bytes()[..8], CLIENT_PREFIX);
            assert!(id.as_bytes()[8..].iter().all(u8::is_ascii_alphanumeric));
            assert!(id.is_rivulet());
            assert_eq!(id.client().unwrap().to_string(), "rivulet 0.1.0");
        }
    }

    #[test]
    fn generate_with_is_reproducible() {
        let a = PeerId::generate_with(&mut StdRng::seed_from_u64(7));
        let b = PeerId::generate_with(&mut StdRng::seed_from_u64(7));
        let c = PeerId::generate_with(&mut StdRng::seed_from_u64(8));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn garbage_is_not_identified() {
        assert_eq!(identify(&[0u8; 20]), None);
        assert_eq!(identify(&[0xFFu8; 20]), None);
        assert_eq!(identify(b"abcdefghijklmnopqrst"), None);
        assert_eq!(
            identify(
                b"\x8a\x13\xf0\x01\x99\x00\x42\x7f\x10\xee\xc3\x5d\x00\x21\x6b\xb0\x04\x9e\x77\x02"
            ),
            None
        );
        // Malformed Azureus ids: no closing dash, bad version characters.
        assert_eq!(name_of(b"-qB4620x"), None);
        assert_eq!(name_of(b"-ZZ12\xff4-"), None);
        assert_eq!(name_of(b"-Z\x0012344-"), None);
        // Mainline with nothing after the numbers.
        assert_eq!(name_of(b"M4-4-0xx"), None);
    }

    #[test]
    fn wrong_lengths_are_rejected() {
        assert_eq!(identify(b""), None);
        assert_eq!(identify(b"-qB4620-abcdefghijk"), None);
        assert_eq!(identify(b"-qB4620-abcdefghijklm"), None);
        assert_eq!(PeerId::from_slice(b"short"), Err(InvalidPeerIdLength(5)));
        assert_eq!(
            PeerId::try_from(&b"-qB4620-abcdefghijkl"[..]).unwrap(),
            PeerId(*b"-qB4620-abcdefghijkl")
        );
    }

    #[test]
    fn debug_and_display_are_printable() {
        let mut bytes = *b"-qB4620-abcdefghijkl";
        bytes[19] = 0xFF;
        bytes[18] = b'\n';
        let id = PeerId(bytes);
        assert_eq!(id.to_string(), "-qB4620-abcdefghij\\n\\xff");
        assert_eq!(format!("{id:?}"), "PeerId(\"-qB4620-abcdefghij\\n\\xff\")");
        assert_eq!(<[u8; 20]>::from(id), bytes);
        assert_eq!(id.as_ref(), &bytes[..]);
    }

    /// Prefixes that steer `identify` down each of its paths.
    fn interesting_prefix() -> impl Strategy<Value = Vec<u8>> {
        let fixed: Vec<Vec<u8>> = [
            &b"-"[..],
            b"-UT",
            b"-BL",
            b"-FG",
            b"-TR",
            b"-DE",
            b"-KT",
            b"-ML",
            b"-BOW",
            b"exbc",
            b"XBT",
            b"TIX",
            b"OP",
            b"DNA",
            b"Plus",
            b"Mbrst",
            b"QVOD",
            b"btpd/",
            b"turbobt",
            b"M",
            b"Q",
            b"A2-",
            b"S3-",
            b"T",
            b"S",
            b"\0",
            b"\0\0\0\0\0\0\0\0\0\0\0\0",
        ]
        .iter()
        .map(|p| p.to_vec())
        .collect();
        let codes: Vec<Vec<u8>> = AZUREUS_CLIENTS
            .iter()
            .map(|(code, _, _)| [&b"-"[..], &code[..]].concat())
            .collect();
        proptest::sample::select([fixed, codes].concat())
    }

    fn assert_sane(info: &ClientInfo) {
        assert!(!info.name.is_empty());
        let text = info.to_string();
        assert!(!text.chars().any(char::is_control), "{text:?}");
    }

    proptest! {
        #[test]
        fn identify_never_panics(bytes in any::<[u8; 20]>()) {
            if let Some(info) = identify(&bytes) {
                assert_sane(&info);
            }
            let _ = PeerId(bytes).client();
            let _ = format!("{:?}", PeerId(bytes));
        }

        #[test]
        fn identify_never_panics_on_known_prefixes(
            prefix in interesting_prefix(),
            tail in any::<[u8; 20]>(),
        ) {
            let mut bytes = tail;
            bytes[..prefix.len()].copy_from_slice(&prefix);
            if let Some(info) = identify(&bytes) {
                assert_sane(&info);
            }
        }

        #[test]
        fn well_formed_azureus_ids_are_always_named(
            code in "[A-Za-z0-9~]{2}",
            version in "[0-9A-Za-z]{4}",
            tail in any::<[u8; 12]>(),
        ) {
            let mut bytes = [0u8; 20];
            bytes[0] = b'-';
            bytes[1..3].copy_from_slice(code.as_bytes());
            bytes[3..7].copy_from_slice(version.as_bytes());
            bytes[7] = b'-';
            bytes[8..].copy_from_slice(&tail);
            let info = identify(&bytes);
            prop_assert!(info.is_some());
            assert_sane(&info.unwrap());
        }

        #[test]
        fn any_length_is_safe(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let info = identify(&bytes);
            if bytes.len() != 20 {
                prop_assert!(info.is_none());
            }
        }

        #[test]
        fn generated_ids_identify_as_rivulet(seed in any::<u64>()) {
            let id = PeerId::generate_with(&mut StdRng::seed_from_u64(seed));
            let name = id.client().map(|c| c.to_string());
            prop_assert_eq!(name.as_deref(), Some("rivulet 0.1.0"));
        }
    }
}
