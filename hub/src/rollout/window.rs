//! The daily maintenance window: executions are released only while it is
//! open (those already released keep running after it closes).
//!
//! A window is a start and an end time of day, in UTC or at a fixed offset
//! from it (`"+02:00"`). An end earlier than the start crosses midnight
//! (`22:00`-`04:00`). Appliance time zones come with the appliance settings
//! (phase 2): [`Window`] then gains a zone that is evaluated per appliance.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Millis, MINUTE_MS};

const MINUTES_PER_DAY: i64 = 24 * 60;
const DAY_MS: Millis = MINUTES_PER_DAY * MINUTE_MS;
/// The largest offset in use anywhere (UTC+14:00, Line Islands).
const MAX_OFFSET_MINUTES: i16 = 14 * 60;

/// A time of day, minute precision: `"HH:MM"`, 00:00 to 23:59.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeOfDay(u16);

impl TimeOfDay {
    /// `hours:minutes`, None when out of range.
    pub fn new(hours: u16, minutes: u16) -> Option<Self> {
        (hours < 24 && minutes < 60).then_some(Self(hours * 60 + minutes))
    }

    /// Minutes since midnight.
    pub fn minutes(self) -> i64 {
        i64::from(self.0)
    }
}

impl FromStr for TimeOfDay {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("`{s}` is not a time of day: expected HH:MM, 00:00 to 23:59");
        let (h, m) = s.split_once(':').ok_or_else(invalid)?;
        let two_digits = |part: &str| part.len() == 2 && part.bytes().all(|b| b.is_ascii_digit());
        if !two_digits(h) || !two_digits(m) {
            return Err(invalid());
        }
        let (h, m) = (
            h.parse().map_err(|_| invalid())?,
            m.parse().map_err(|_| invalid())?,
        );
        Self::new(h, m).ok_or_else(invalid)
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

/// A fixed offset from UTC: `"Z"` (or `"+00:00"`), `"+02:00"`, `"-05:30"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UtcOffset(i16);

impl UtcOffset {
    /// UTC itself.
    pub const UTC: Self = Self(0);

    /// Minutes east of UTC, None beyond +-14:00.
    pub fn from_minutes(minutes: i16) -> Option<Self> {
        (minutes.abs() <= MAX_OFFSET_MINUTES).then_some(Self(minutes))
    }

    fn millis(self) -> Millis {
        i64::from(self.0) * MINUTE_MS
    }
}

impl FromStr for UtcOffset {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "Z" {
            return Ok(Self::UTC);
        }
        let invalid = || format!("`{s}` is not a UTC offset: expected Z or +HH:MM / -HH:MM");
        let (sign, rest) = match s.as_bytes().first() {
            Some(b'+') => (1, &s[1..]),
            Some(b'-') => (-1, &s[1..]),
            _ => return Err(invalid()),
        };
        let time: TimeOfDay = rest.parse().map_err(|_| invalid())?;
        let minutes = i16::try_from(time.minutes()).map_err(|_| invalid())?;
        Self::from_minutes(sign * minutes).ok_or_else(invalid)
    }
}

impl fmt::Display for UtcOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("Z");
        }
        let sign = if self.0 < 0 { '-' } else { '+' };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{:02}:{:02}", abs / 60, abs % 60)
    }
}

macro_rules! text_serde {
    ($($ty:ty),*) => {$(
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                raw.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}

text_serde!(TimeOfDay, UtcOffset);

/// A daily window `[start, end)` at a fixed offset from UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Window {
    /// When it opens, local time: `"HH:MM"`.
    #[schema(value_type = String, example = "02:00")]
    pub start: TimeOfDay,
    /// When it closes, local time; earlier than `start` crosses midnight.
    #[schema(value_type = String, example = "04:00")]
    pub end: TimeOfDay,
    /// The local time's offset from UTC (`"Z"`, `"+01:00"`); UTC when
    /// absent.
    #[serde(default)]
    #[schema(value_type = String, example = "+01:00")]
    pub utc_offset: UtcOffset,
}

impl Window {
    /// Minutes since local midnight at `now`.
    fn local_minute(&self, now: Millis) -> i64 {
        (now + self.utc_offset.millis())
            .div_euclid(MINUTE_MS)
            .rem_euclid(MINUTES_PER_DAY)
    }

    /// Whether the window is open at `now`.
    pub fn is_open(&self, now: Millis) -> bool {
        let minute = self.local_minute(now);
        let (start, end) = (self.start.minutes(), self.end.minutes());
        if start < end {
            start <= minute && minute < end
        } else {
            minute >= start || minute < end
        }
    }

    /// `now` when open, else the next time it opens.
    pub fn next_open(&self, now: Millis) -> Millis {
        if self.is_open(now) {
            return now;
        }
        let offset = self.utc_offset.millis();
        let local_midnight = (now + offset).div_euclid(DAY_MS) * DAY_MS;
        let opens = local_midnight + self.start.minutes() * MINUTE_MS - offset;
        if opens > now {
            opens
        } else {
            opens + DAY_MS
        }
    }

    /// Whether start and end differ (an empty window never opens).
    pub fn is_valid(&self) -> bool {
        self.start != self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-01-01T00:00:00Z.
    const MIDNIGHT: Millis = 1_704_067_200_000;
    const HOUR: Millis = 60 * MINUTE_MS;

    fn window(start: &str, end: &str, offset: &str) -> Window {
        serde_json::from_value(serde_json::json!({"start": start, "end": end, "utcOffset": offset}))
            .expect("a valid window")
    }

    #[test]
    fn times_and_offsets_have_one_spelling() {
        for text in ["00:00", "02:30", "23:59"] {
            assert_eq!(text.parse::<TimeOfDay>().expect(text).to_string(), text);
        }
        for bad in ["24:00", "2:30", "02:60", "0230", "", "ab:cd", "+1:00"] {
            assert!(bad.parse::<TimeOfDay>().is_err(), "{bad}");
        }
        for (text, shown) in [
            ("Z", "Z"),
            ("+00:00", "Z"),
            ("+02:00", "+02:00"),
            ("-05:30", "-05:30"),
        ] {
            assert_eq!(text.parse::<UtcOffset>().expect(text).to_string(), shown);
        }
        for bad in ["+15:00", "02:00", "UTC", "+2", "-14:01"] {
            assert!(bad.parse::<UtcOffset>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_utc_window_opens_and_closes_at_its_times() {
        let w = window("02:00", "04:00", "Z");
        assert!(!w.is_open(MIDNIGHT + HOUR));
        assert!(w.is_open(MIDNIGHT + 2 * HOUR));
        assert!(w.is_open(MIDNIGHT + 4 * HOUR - 1));
        assert!(!w.is_open(MIDNIGHT + 4 * HOUR));
        assert_eq!(w.next_open(MIDNIGHT + HOUR), MIDNIGHT + 2 * HOUR);
        assert_eq!(w.next_open(MIDNIGHT + 3 * HOUR), MIDNIGHT + 3 * HOUR);
        // After it closed: tomorrow.
        assert_eq!(w.next_open(MIDNIGHT + 5 * HOUR), MIDNIGHT + 26 * HOUR);
    }

    #[test]
    fn a_window_may_cross_midnight_and_sit_at_an_offset() {
        let w = window("22:00", "01:00", "Z");
        assert!(w.is_open(MIDNIGHT + 30 * MINUTE_MS));
        assert!(w.is_open(MIDNIGHT - HOUR));
        assert!(!w.is_open(MIDNIGHT + HOUR));
        assert_eq!(w.next_open(MIDNIGHT + HOUR), MIDNIGHT + 22 * HOUR);

        // 02:00-04:00 at +02:00 is 00:00-02:00 UTC.
        let east = window("02:00", "04:00", "+02:00");
        assert!(east.is_open(MIDNIGHT));
        assert!(!east.is_open(MIDNIGHT + 2 * HOUR));
        assert_eq!(east.next_open(MIDNIGHT + 3 * HOUR), MIDNIGHT + 24 * HOUR);
        // 02:00-04:00 at -05:30 is 07:30-09:30 UTC.
        let west = window("02:00", "04:00", "-05:30");
        assert_eq!(
            west.next_open(MIDNIGHT),
            MIDNIGHT + 7 * HOUR + 30 * MINUTE_MS
        );
        assert!(!window("02:00", "02:00", "Z").is_valid());
    }
}
