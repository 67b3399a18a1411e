//! Auto-upgrade: when an appliance's own update schedule comes.
//!
//! An appliance's settings name a day (`monday`..`sunday`, or `daily`), a
//! time `HH:MM` and an IANA time zone (`scheduleUpdateDay`,
//! `scheduleUpdateTime`, `timeZone`). The auto-upgrade duty upgrades the
//! appliances whose next scheduled update falls within the next hour
//! ([`due_within`]). An appliance without a complete schedule, or with a
//! zone the hub does not know, is never due.
//!
//! Local times follow the zone's daylight saving rules: a time that occurs
//! twice (clocks going back) is due at its first occurrence still to come;
//! a time that does not occur (clocks going forward) is due at the first
//! minute that exists after it (`02:30` on a spring-forward night in
//! Berlin is `03:00` CEST).

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveTime, TimeZone, Weekday};
use chrono_tz::Tz;

use super::Millis;

/// How far ahead the auto-upgrade duty looks: one hour.
pub const HORIZON_MS: Millis = 3_600_000;

/// The day of an update schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleDay {
    /// Every day.
    Daily,
    /// One day a week.
    Weekly(Weekday),
}

impl ScheduleDay {
    /// `monday`..`sunday` or `daily` (the settings' spelling); None for
    /// anything else.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "daily" => Self::Daily,
            "monday" => Self::Weekly(Weekday::Mon),
            "tuesday" => Self::Weekly(Weekday::Tue),
            "wednesday" => Self::Weekly(Weekday::Wed),
            "thursday" => Self::Weekly(Weekday::Thu),
            "friday" => Self::Weekly(Weekday::Fri),
            "saturday" => Self::Weekly(Weekday::Sat),
            "sunday" => Self::Weekly(Weekday::Sun),
            _ => return None,
        })
    }

    fn includes(self, date: NaiveDate) -> bool {
        match self {
            Self::Daily => true,
            Self::Weekly(day) => date.weekday() == day,
        }
    }
}

/// An appliance's update schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateSchedule {
    /// Which days.
    pub day: ScheduleDay,
    /// Local time of day.
    pub time: NaiveTime,
    /// The appliance's zone.
    pub zone: Tz,
}

impl UpdateSchedule {
    /// The schedule of an appliance's settings; None when a part is
    /// missing or not understood (such an appliance is never due).
    pub fn from_settings(
        day: Option<&str>,
        time: Option<&str>,
        zone: Option<&str>,
    ) -> Option<Self> {
        let day = ScheduleDay::parse(day?)?;
        let time = NaiveTime::parse_from_str(time?, "%H:%M").ok()?;
        let zone = zone?.parse::<Tz>().ok()?;
        Some(Self { day, time, zone })
    }

    /// The first scheduled update at or after `now` (epoch ms), in epoch
    /// ms; None only if `now` is out of chrono's range.
    pub fn next_after(&self, now: Millis) -> Option<Millis> {
        let now_utc = DateTime::from_timestamp_millis(now)?;
        let today = now_utc.with_timezone(&self.zone).date_naive();
        // Yesterday too: a zone's date can lag the instant by a day around
        // an offset change; eight days ahead always hold a weekly day.
        (-1..=8)
            .filter_map(|offset| today.checked_add_signed(Duration::days(offset)))
            .filter(|date| self.day.includes(*date))
            .flat_map(|date| self.instants_on(date))
            .filter(|instant| *instant >= now)
            .min()
    }

    /// The instants (epoch ms) of the schedule's local time on `date`:
    /// none or one, two where the time occurs twice.
    fn instants_on(&self, date: NaiveDate) -> Vec<Millis> {
        let local = date.and_time(self.time);
        match self.zone.from_local_datetime(&local) {
            LocalResult::Single(at) => vec![at.timestamp_millis()],
            LocalResult::Ambiguous(first, second) => {
                vec![first.timestamp_millis(), second.timestamp_millis()]
            }
            // In a gap: the first local minute that exists after it (gaps
            // are at most a few hours).
            LocalResult::None => (1..=4 * 60)
                .map(|minutes| local + Duration::minutes(minutes))
                .find_map(|later| self.zone.from_local_datetime(&later).earliest())
                .map(|at| at.timestamp_millis())
                .into_iter()
                .collect(),
        }
    }
}

/// Whether the next scheduled update of `schedule` is within `horizon` ms
/// of `now`: at `now` or later, before `now + horizon`. No schedule: never.
pub fn due_within(schedule: Option<&UpdateSchedule>, now: Millis, horizon: Millis) -> bool {
    schedule
        .and_then(|s| s.next_after(now))
        .is_some_and(|next| next < now.saturating_add(horizon))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Epoch ms of a UTC `YYYY-MM-DDTHH:MM:SSZ` instant.
    fn utc(text: &str) -> Millis {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.timestamp_millis())
            .unwrap_or_else(|err| panic!("{text}: {err}"))
    }

    fn schedule(day: &str, time: &str, zone: &str) -> Option<UpdateSchedule> {
        UpdateSchedule::from_settings(Some(day), Some(time), Some(zone))
    }

    #[test]
    fn schedules_parse_or_are_never_due() {
        assert!(schedule("monday", "02:00", "Europe/Berlin").is_some());
        assert!(schedule("daily", "23:59", "UTC").is_some());
        assert_eq!(schedule("Monday", "02:00", "UTC"), None, "lower case only");
        assert_eq!(schedule("weekdays", "02:00", "UTC"), None);
        assert_eq!(schedule("daily", "24:00", "UTC"), None);
        assert_eq!(schedule("daily", "2am", "UTC"), None);
        assert_eq!(schedule("daily", "02:00", "Mars/Olympus_Mons"), None);
        assert_eq!(
            UpdateSchedule::from_settings(Some("daily"), Some("02:00"), None),
            None
        );
        assert_eq!(
            UpdateSchedule::from_settings(None, Some("02:00"), Some("UTC")),
            None
        );
        let now = utc("2024-01-01T01:30:00Z");
        assert!(!due_within(None, now, HORIZON_MS), "no schedule: never due");
        let unknown = schedule("daily", "02:00", "Mars/Olympus_Mons");
        assert!(!due_within(unknown.as_ref(), now, HORIZON_MS));
    }

    #[test]
    fn due_within_the_next_hour() {
        // (day, time, zone, now UTC, due within the hour)
        let cases = [
            // UTC, no daylight saving; 2024-01-01 is a Monday.
            ("monday", "02:00", "UTC", "2024-01-01T01:30:00Z", true),
            ("monday", "02:00", "UTC", "2024-01-01T02:00:00Z", true),
            ("monday", "02:00", "UTC", "2024-01-01T01:00:00Z", false),
            ("monday", "02:00", "UTC", "2024-01-01T01:00:01Z", true),
            ("monday", "02:00", "UTC", "2024-01-01T02:00:01Z", false),
            ("tuesday", "02:00", "UTC", "2024-01-01T01:30:00Z", false),
            ("daily", "02:00", "UTC", "2024-01-03T01:30:00Z", true),
            ("daily", "02:00", "UTC", "2024-01-03T03:30:00Z", false),
            // Tokyo (+09:00, no daylight saving): Monday 00:15 local is
            // Sunday 15:15 UTC, a day boundary apart.
            (
                "monday",
                "00:15",
                "Asia/Tokyo",
                "2023-12-31T14:30:00Z",
                true,
            ),
            (
                "sunday",
                "00:15",
                "Asia/Tokyo",
                "2023-12-31T14:30:00Z",
                false,
            ),
            // Kolkata (+05:30): half-hour offsets.
            (
                "monday",
                "07:00",
                "Asia/Kolkata",
                "2024-01-01T01:00:00Z",
                true,
            ),
            (
                "monday",
                "07:00",
                "Asia/Kolkata",
                "2024-01-01T00:29:00Z",
                false,
            ),
            // Los Angeles (-08:00 in winter): Sunday 23:30 local is Monday
            // 07:30 UTC.
            (
                "sunday",
                "23:30",
                "America/Los_Angeles",
                "2024-01-01T07:00:00Z",
                true,
            ),
            (
                "monday",
                "23:30",
                "America/Los_Angeles",
                "2024-01-01T07:00:00Z",
                false,
            ),
            // Across midnight: daily 00:10 from 23:40 the day before.
            (
                "daily",
                "00:10",
                "Europe/Berlin",
                "2024-01-01T22:40:00Z",
                true,
            ),
            // Berlin in summer (+02:00) and winter (+01:00).
            (
                "daily",
                "03:00",
                "Europe/Berlin",
                "2024-07-01T00:30:00Z",
                true,
            ),
            (
                "daily",
                "03:00",
                "Europe/Berlin",
                "2024-07-01T01:30:00Z",
                false,
            ),
            (
                "daily",
                "03:00",
                "Europe/Berlin",
                "2024-01-15T01:30:00Z",
                true,
            ),
            // Berlin springs forward on 2024-03-31 at 02:00 CET -> 03:00
            // CEST: 02:30 does not exist and is due at 03:00 CEST (01:00Z).
            (
                "sunday",
                "02:30",
                "Europe/Berlin",
                "2024-03-31T00:30:00Z",
                true,
            ),
            (
                "sunday",
                "02:30",
                "Europe/Berlin",
                "2024-03-30T23:59:00Z",
                false,
            ),
            // Berlin falls back on 2024-10-27 at 03:00 CEST -> 02:00 CET:
            // 02:30 occurs at 00:30Z and again at 01:30Z.
            (
                "sunday",
                "02:30",
                "Europe/Berlin",
                "2024-10-26T23:45:00Z",
                true,
            ),
            (
                "sunday",
                "02:30",
                "Europe/Berlin",
                "2024-10-27T00:45:00Z",
                true,
            ),
            (
                "sunday",
                "02:30",
                "Europe/Berlin",
                "2024-10-27T01:45:00Z",
                false,
            ),
            // New York's summer (-04:00): the same wall time is an hour
            // earlier in UTC than in winter.
            (
                "friday",
                "22:00",
                "America/New_York",
                "2024-07-06T01:30:00Z",
                true,
            ),
            (
                "friday",
                "22:00",
                "America/New_York",
                "2024-01-06T02:30:00Z",
                true,
            ),
            (
                "friday",
                "22:00",
                "America/New_York",
                "2024-01-06T01:30:00Z",
                false,
            ),
        ];
        for (day, time, zone, now, due) in cases {
            let plan = schedule(day, time, zone);
            assert!(plan.is_some(), "{day} {time} {zone}");
            assert_eq!(
                due_within(plan.as_ref(), utc(now), HORIZON_MS),
                due,
                "{day} {time} {zone} at {now}"
            );
        }
    }

    #[test]
    fn the_next_update_is_the_first_one_still_to_come() {
        let plan = schedule("sunday", "02:30", "Europe/Berlin");
        let next = plan.and_then(|p| p.next_after(utc("2024-03-31T00:30:00Z")));
        assert_eq!(next, Some(utc("2024-03-31T01:00:00Z")), "spring forward");
        let next = plan.and_then(|p| p.next_after(utc("2024-10-27T00:45:00Z")));
        assert_eq!(next, Some(utc("2024-10-27T01:30:00Z")), "second 02:30");
        let next = plan.and_then(|p| p.next_after(utc("2024-10-27T01:45:00Z")));
        assert_eq!(next, Some(utc("2024-11-03T01:30:00Z")), "a week later");
        let daily = schedule("daily", "00:00", "Pacific/Kiritimati");
        let next = daily.and_then(|p| p.next_after(utc("2024-01-01T10:00:01Z")));
        assert_eq!(next, Some(utc("2024-01-02T10:00:00Z")), "+14:00");
    }
}
