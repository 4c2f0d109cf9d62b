//! The admin access log: one line per request, appended to a file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::HttpBody;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

/// An open access-log file; lines are written whole under a lock.
#[derive(Debug)]
pub(crate) struct AccessLog {
    file: Mutex<File>,
}

impl AccessLog {
    /// Opens (creating if needed) `path` for appending.
    pub(crate) fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot open admin access log {}: {e}", path.display()),
                )
            })?;
        Ok(Self {
            file: Mutex::new(file),
        })
    }

    fn write_line(&self, line: &str) {
        let Ok(mut file) = self.file.lock() else {
            return;
        };
        if let Err(e) = file.write_all(line.as_bytes()) {
            tracing::warn!("admin access log write failed: {e}");
        }
    }
}

/// Middleware: runs the request, then logs it.
pub(crate) async fn log_request(
    State(log): State<Arc<AccessLog>>,
    request: Request,
    next: Next,
) -> Response {
    let start_wall = SystemTime::now();
    let start = Instant::now();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "-".to_owned(), |c| c.0.to_string());
    let agent = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let request_line = format!(
        "{} {} {:?}",
        request.method(),
        request.uri(),
        request.version()
    );
    let response = next.run(request).await;
    let bytes = response.body().size_hint().exact().unwrap_or(0);
    let line = format!(
        "[{}] \"{}\" {} {} {} \"{}\" \"{}\"\n",
        rfc3339(start_wall),
        request_line.escape_debug(),
        response.status().as_u16(),
        bytes,
        start.elapsed().as_millis(),
        peer,
        agent.escape_debug(),
    );
    log.write_line(&line);
    response
}

/// `2026-01-02T03:04:05.678Z` for a wall-clock time (UTC, millisecond precision).
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Gregorian (year, month, day) of a count of days since 1970-01-01 (proleptic calendar,
/// computed in 400-year eras of 146 097 days, years starting in March).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z / 146_097;
    let doe = z % 146_097; // day of era
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of (March-based) year
    let mp = (5 * doy + 2) / 153; // March-based month
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_utc_times() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(19_723 * 86_400_000 + 3_723_456);
        assert_eq!(rfc3339(t), "2024-01-01T01:02:03.456Z");
        // 2000-02-29 (leap day of a century leap year) is day 11_016.
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(11_016 + 1), (2000, 3, 1));
        assert_eq!(civil_from_days(20_415), (2025, 11, 23));
    }
}
