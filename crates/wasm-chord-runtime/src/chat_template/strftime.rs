//! `strftime_now(format)` for templates: the current UTC time (or a fixed
//! time set for reproducible output) formatted like Python's
//! `datetime.strftime` for the common directives.

/// A civil date-time in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DateTime {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    /// 0 = Monday.
    weekday: u32,
    /// 1-based day of the year.
    yday: u32,
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

impl DateTime {
    /// From seconds since the Unix epoch (UTC), using Howard Hinnant's
    /// `civil_from_days` algorithm.
    pub(crate) fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        // 1970-01-01 was a Thursday (weekday 3 with Monday = 0).
        let weekday = (days + 3).rem_euclid(7) as u32;
        let cum = [0u32, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let leap = u32::from(month > 2 && is_leap(year));
        let yday = cum.get(month as usize - 1).copied().unwrap_or(0) + day + leap;
        Self {
            year,
            month,
            day,
            hour: (sod / 3600) as u32,
            minute: (sod % 3600 / 60) as u32,
            second: (sod % 60) as u32,
            weekday,
            yday,
        }
    }

    /// Now, from the system clock (the epoch if the clock is unavailable,
    /// e.g. on `wasm32-unknown-unknown`).
    pub(crate) fn now() -> Self {
        // `SystemTime::now` panics on wasm32-unknown-unknown (no clock):
        // there, pin the time with `ChatTemplate::with_fixed_time`.
        #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
        let secs = 0;
        #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        Self::from_unix(secs)
    }

    /// Python-style `strftime`. Supported: `%a %A %b %B %d %H %I %j %m %M
    /// %p %S %y %Y %%` (`%Z`/`%z` are empty, as for a naive datetime);
    /// anything else is copied unchanged.
    pub(crate) fn strftime(&self, fmt: &str) -> String {
        let month_name = MONTHS.get(self.month as usize - 1).copied().unwrap_or("");
        let day_name = DAYS.get(self.weekday as usize).copied().unwrap_or("");
        let mut out = String::with_capacity(fmt.len() + 16);
        let mut chars = fmt.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let Some(d) = chars.next() else {
                out.push('%');
                break;
            };
            let hour12 = if self.hour.is_multiple_of(12) {
                12
            } else {
                self.hour % 12
            };
            match d {
                'a' => out.push_str(day_name.get(..3).unwrap_or(day_name)),
                'A' => out.push_str(day_name),
                'b' => out.push_str(month_name.get(..3).unwrap_or(month_name)),
                'B' => out.push_str(month_name),
                'd' => out.push_str(&format!("{:02}", self.day)),
                'H' => out.push_str(&format!("{:02}", self.hour)),
                'I' => out.push_str(&format!("{hour12:02}")),
                'j' => out.push_str(&format!("{:03}", self.yday)),
                'm' => out.push_str(&format!("{:02}", self.month)),
                'M' => out.push_str(&format!("{:02}", self.minute)),
                'p' => out.push_str(if self.hour < 12 { "AM" } else { "PM" }),
                'S' => out.push_str(&format!("{:02}", self.second)),
                'y' => out.push_str(&format!("{:02}", self.year.rem_euclid(100))),
                'Y' => out.push_str(&self.year.to_string()),
                'Z' | 'z' => {}
                '%' => out.push('%'),
                other => {
                    out.push('%');
                    out.push(other);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_python() {
        // python3: datetime.datetime(2024, 7, 26, 13, 5, 9).strftime(...)
        let t = DateTime::from_unix(1_721_999_109);
        assert_eq!(t.strftime("%d %b %Y"), "26 Jul 2024");
        assert_eq!(
            t.strftime("%A %B %d, %Y %H:%M:%S %p %I %j %y %%"),
            "Friday July 26, 2024 13:05:09 PM 01 208 24 %"
        );
        // 2000-02-29 00:00:00 (leap day), a Tuesday.
        let t = DateTime::from_unix(951_782_400);
        assert_eq!(
            t.strftime("%Y-%m-%d %a %j %I %p"),
            "2000-02-29 Tue 060 12 AM"
        );
    }
}
