//! Configuration: a TOML file, every key of which an environment variable can also set.
//!
//! Two stages (as ripgrep does it): [`SETTINGS`] lists what may be written, with its key, its
//! environment variable and its documentation; [`Config::load`] merges file and environment and
//! checks every value into the typed [`Config`]. A bad value is reported as one line naming the
//! key, and the binary exits with status 2.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// What kind of value a setting holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Text,
    Integer,
}

/// One setting: its dotted TOML key, the environment variable that overrides it, and its docs.
pub struct Setting {
    pub key: &'static str,
    pub env: &'static str,
    pub kind: Kind,
    pub default: Option<&'static str>,
    pub doc: &'static str,
}

/// Every setting mixd reads. `mixd.example.toml` is checked against this list by a test.
pub const SETTINGS: &[Setting] = &[
    Setting {
        key: "server",
        env: "MIXD_SERVER",
        kind: Kind::Text,
        default: Some("127.0.0.1:5347"),
        doc: "host:port of the XMPP server's component port (XEP-0114)",
    },
    Setting {
        key: "secret",
        env: "MIXD_SECRET",
        kind: Kind::Text,
        default: None,
        doc: "component secret shared by both domains unless mix.secret / muc.secret are set",
    },
    Setting {
        key: "mix.domain",
        env: "MIXD_MIX_DOMAIN",
        kind: Kind::Text,
        default: None,
        doc: "the domain that serves MIX channels, e.g. mix.example.org",
    },
    Setting {
        key: "mix.secret",
        env: "MIXD_MIX_SECRET",
        kind: Kind::Text,
        default: None,
        doc: "component secret of the MIX domain (defaults to `secret`)",
    },
    Setting {
        key: "muc.domain",
        env: "MIXD_MUC_DOMAIN",
        kind: Kind::Text,
        default: None,
        doc: "the domain that serves the same channels as MUC rooms, e.g. muc.example.org",
    },
    Setting {
        key: "muc.secret",
        env: "MIXD_MUC_SECRET",
        kind: Kind::Text,
        default: None,
        doc: "component secret of the MUC domain (defaults to `secret`)",
    },
    Setting {
        key: "data_dir",
        env: "MIXD_DATA_DIR",
        kind: Kind::Text,
        default: Some("data"),
        doc: "directory for the default SQLite database",
    },
    Setting {
        key: "database_url",
        env: "MIXD_DATABASE_URL",
        kind: Kind::Text,
        default: None,
        doc: "sqlite://PATH or postgres://USER@HOST:PORT/DB (default: SQLite file mixd.db in data_dir)",
    },
    Setting {
        key: "http",
        env: "MIXD_HTTP",
        kind: Kind::Text,
        default: Some("127.0.0.1:5380"),
        doc: "listen address of the admin HTTP API (/health, /metrics); \"off\" disables it",
    },
    Setting {
        key: "log",
        env: "MIXD_LOG",
        kind: Kind::Text,
        default: Some("info"),
        doc: "log filter (tracing EnvFilter syntax), e.g. info or mixd=debug",
    },
    Setting {
        key: "limits.max_stanza_bytes",
        env: "MIXD_MAX_STANZA_BYTES",
        kind: Kind::Integer,
        default: Some("262144"),
        doc: "largest stanza accepted from the server; larger ones get policy-violation",
    },
    Setting {
        key: "limits.outbound_queue",
        env: "MIXD_OUTBOUND_QUEUE",
        kind: Kind::Integer,
        default: Some("8192"),
        doc: "stanzas queued per link before producers wait (back-pressure)",
    },
    Setting {
        key: "limits.reconnect_max_seconds",
        env: "MIXD_RECONNECT_MAX_SECONDS",
        kind: Kind::Integer,
        default: Some("30"),
        doc: "longest wait between two connection attempts (exponential backoff with jitter)",
    },
    Setting {
        key: "limits.channel_idle_seconds",
        env: "MIXD_CHANNEL_IDLE_SECONDS",
        kind: Kind::Integer,
        default: Some("600"),
        doc: "a channel with no online client and no traffic leaves memory after this long",
    },
    Setting {
        key: "muc.presence_cap",
        env: "MIXD_MUC_PRESENCE_CAP",
        kind: Kind::Integer,
        default: Some("0"),
        doc: "rooms with more occupants broadcast only moderators' presence (0: no cap)",
    },
    Setting {
        key: "dmuc.mirrors",
        env: "MIXD_DMUC_MIRRORS",
        kind: Kind::Text,
        default: Some(""),
        doc: "DMUC master: mirror domains allowed to mirror this service's rooms, comma-separated (empty: none)",
    },
    Setting {
        key: "dmuc.mirror_domain",
        env: "MIXD_DMUC_MIRROR_DOMAIN",
        kind: Kind::Text,
        default: Some(""),
        doc: "DMUC mirror: a domain on which this mixd mirrors remote rooms for local users (empty: off)",
    },
    Setting {
        key: "dmuc.mirror_secret",
        env: "MIXD_DMUC_MIRROR_SECRET",
        kind: Kind::Text,
        default: None,
        doc: "component secret of the mirror domain (defaults to `secret`)",
    },
    Setting {
        key: "archive.retention_days",
        env: "MIXD_ARCHIVE_RETENTION_DAYS",
        kind: Kind::Integer,
        default: Some("0"),
        doc: "default retention: drop archive entries older than this many days (0 keeps all)",
    },
    Setting {
        key: "archive.retention_messages",
        env: "MIXD_ARCHIVE_RETENTION_MESSAGES",
        kind: Kind::Integer,
        default: Some("0"),
        doc: "default retention: keep at most this many entries per channel node (0 keeps all)",
    },
    Setting {
        key: "archive.retention_interval_seconds",
        env: "MIXD_ARCHIVE_RETENTION_INTERVAL_SECONDS",
        kind: Kind::Integer,
        default: Some("300"),
        doc: "how often the retention sweep runs",
    },
];

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: String,
    pub mix: Domain,
    pub muc: Domain,
    pub database_url: String,
    pub data_dir: PathBuf,
    pub http: Option<SocketAddr>,
    pub log: String,
    pub max_stanza_bytes: usize,
    pub outbound_queue: usize,
    pub reconnect_max: std::time::Duration,
    pub channel_idle: std::time::Duration,
    pub presence_cap: Option<usize>,
    /// DMUC master: mirror domains allowed to mirror rooms.
    pub dmuc_mirrors: Vec<String>,
    /// DMUC mirror: the domain this mixd mirrors remote rooms on.
    pub dmuc_mirror: Option<Domain>,
    pub retention: mam_store::Retention,
    pub retention_interval: std::time::Duration,
}

/// One served domain and the secret of its component link.
#[derive(Debug, Clone)]
pub struct Domain {
    pub domain: String,
    pub secret: String,
}

/// What is wrong with the configuration, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("config file {path} is not valid TOML: {reason}")]
    Syntax { path: String, reason: String },
    #[error("config key `{key}` is not a known setting")]
    Unknown { key: String },
    #[error("config key `{key}` ({env}): {problem}")]
    Bad {
        key: &'static str,
        env: &'static str,
        problem: String,
    },
}

impl Config {
    /// Read `file` (if any), then let environment variables override it, then check everything.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let table = match file {
            None => toml::Table::new(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Syntax {
                        path: path.display().to_string(),
                        reason: e.message().replace('\n', " "),
                    })?
            }
        };
        let mut unknown = Vec::new();
        collect_keys(&table, "", &mut unknown);
        if let Some(key) = unknown
            .into_iter()
            .find(|k| !SETTINGS.iter().any(|s| s.key == k))
        {
            return Err(ConfigError::Unknown { key });
        }
        let values = Values { table, env: &env };
        values.check()
    }
}

fn collect_keys(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => collect_keys(t, &key, out),
            _ => out.push(key),
        }
    }
}

struct Values<'a, E: Fn(&str) -> Option<String>> {
    table: toml::Table,
    env: &'a E,
}

impl<E: Fn(&str) -> Option<String>> Values<'_, E> {
    fn setting(key: &str) -> &'static Setting {
        SETTINGS
            .iter()
            .find(|s| s.key == key)
            .unwrap_or_else(|| unreachable!("setting {key} is listed in SETTINGS"))
    }

    fn bad(key: &str, problem: impl Into<String>) -> ConfigError {
        let s = Self::setting(key);
        ConfigError::Bad {
            key: s.key,
            env: s.env,
            problem: problem.into(),
        }
    }

    /// The raw text of a setting: environment first, then file, then default.
    fn get(&self, key: &str) -> Result<Option<String>, ConfigError> {
        let s = Self::setting(key);
        if let Some(v) = (self.env)(s.env) {
            return Ok(Some(v));
        }
        let mut node: Option<&toml::Value> = None;
        let mut table = &self.table;
        for part in key.split('.') {
            match table.get(part) {
                Some(toml::Value::Table(t)) => table = t,
                Some(v) => {
                    node = Some(v);
                    break;
                }
                None => break,
            }
        }
        match node {
            Some(toml::Value::String(v)) if s.kind == Kind::Text => Ok(Some(v.clone())),
            Some(toml::Value::Integer(v)) if s.kind == Kind::Integer => Ok(Some(v.to_string())),
            Some(other) => Err(Self::bad(
                key,
                format!(
                    "expected {}, found {}",
                    match s.kind {
                        Kind::Text => "a string",
                        Kind::Integer => "an integer",
                    },
                    other.type_str()
                ),
            )),
            None => Ok(s.default.map(str::to_owned)),
        }
    }

    fn required(&self, key: &str) -> Result<String, ConfigError> {
        match self.get(key)? {
            Some(v) if !v.trim().is_empty() => Ok(v),
            _ => Err(Self::bad(key, "is required")),
        }
    }

    fn integer(&self, key: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
        let raw = self.required(key)?;
        let n: u64 = raw
            .trim()
            .parse()
            .map_err(|_| Self::bad(key, format!("`{raw}` is not a whole number")))?;
        if n < min || n > max {
            return Err(Self::bad(key, format!("{n} is outside {min}..={max}")));
        }
        Ok(n)
    }

    fn domain(&self, key: &str) -> Result<String, ConfigError> {
        let raw = self.required(key)?;
        match jid::Jid::new(&raw) {
            Ok(j) if j.node().is_none() && j.resource().is_none() => Ok(j.to_string()),
            _ => Err(Self::bad(key, format!("`{raw}` is not a domain name"))),
        }
    }

    fn secret(&self, key: &str) -> Result<String, ConfigError> {
        match self.get(key)? {
            Some(v) if !v.is_empty() => Ok(v),
            _ => match self.get("secret")? {
                Some(v) if !v.is_empty() => Ok(v),
                _ => Err(Self::bad(
                    key,
                    "is required (or set the shared `secret` / MIXD_SECRET)",
                )),
            },
        }
    }

    fn check(self) -> Result<Config, ConfigError> {
        let server = self.required("server")?;
        match server.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => return Err(Self::bad("server", format!("`{server}` is not host:port"))),
        }
        let mix = Domain {
            domain: self.domain("mix.domain")?,
            secret: self.secret("mix.secret")?,
        };
        let muc = Domain {
            domain: self.domain("muc.domain")?,
            secret: self.secret("muc.secret")?,
        };
        if mix.domain == muc.domain {
            // XEP-0408: MIX and MUC must not be advertised on the same domain.
            return Err(Self::bad(
                "muc.domain",
                "must differ from mix.domain (XEP-0408 keeps MIX and MUC apart)",
            ));
        }
        let data_dir = PathBuf::from(self.required("data_dir")?);
        let database_url = match self.get("database_url")? {
            Some(url) if !url.trim().is_empty() => {
                let ok = url.starts_with("sqlite:")
                    || url.starts_with("postgres://")
                    || url.starts_with("postgresql://");
                if !ok {
                    return Err(Self::bad(
                        "database_url",
                        format!("`{url}` is neither sqlite:... nor postgres://..."),
                    ));
                }
                url
            }
            _ => format!("sqlite://{}", data_dir.join("mixd.db").display()),
        };
        let http_raw = self.required("http")?;
        let http = if http_raw == "off" {
            None
        } else {
            Some(http_raw.parse::<SocketAddr>().map_err(|_| {
                Self::bad(
                    "http",
                    format!("`{http_raw}` is not an address like 127.0.0.1:5380"),
                )
            })?)
        };
        let dmuc_mirrors: Vec<String> = self
            .get("dmuc.mirrors")?
            .unwrap_or_default()
            .split(',')
            .map(|d| d.trim().to_owned())
            .filter(|d| !d.is_empty())
            .collect();
        for d in &dmuc_mirrors {
            if d.parse::<jid::BareJid>()
                .map_or(true, |j| j.node().is_some())
            {
                return Err(Self::bad("dmuc.mirrors", format!("`{d}` is not a domain")));
            }
        }
        let mirror_domain = self.get("dmuc.mirror_domain")?.unwrap_or_default();
        let dmuc_mirror = if mirror_domain.trim().is_empty() {
            None
        } else {
            let d = mirror_domain.trim().to_owned();
            if d.parse::<jid::BareJid>()
                .map_or(true, |j| j.node().is_some())
            {
                return Err(Self::bad(
                    "dmuc.mirror_domain",
                    format!("`{d}` is not a domain"),
                ));
            }
            let secret = match self.get("dmuc.mirror_secret")? {
                Some(s) => s,
                None => self.required("secret")?,
            };
            Some(Domain { domain: d, secret })
        };
        let log = self.required("log")?;
        if tracing_subscriber::EnvFilter::try_new(&log).is_err() {
            return Err(Self::bad("log", format!("`{log}` is not a log filter")));
        }
        Ok(Config {
            server,
            mix,
            muc,
            database_url,
            data_dir,
            http,
            log,
            max_stanza_bytes: self.integer("limits.max_stanza_bytes", 1024, 16 << 20)? as usize,
            outbound_queue: self.integer("limits.outbound_queue", 16, 1 << 20)? as usize,
            reconnect_max: std::time::Duration::from_secs(self.integer(
                "limits.reconnect_max_seconds",
                1,
                3600,
            )?),
            channel_idle: std::time::Duration::from_secs(self.integer(
                "limits.channel_idle_seconds",
                1,
                86_400,
            )?),
            presence_cap: Some(self.integer("muc.presence_cap", 0, 1 << 24)? as usize)
                .filter(|c| *c > 0),
            dmuc_mirrors,
            dmuc_mirror,
            retention: mam_store::Retention {
                days: Some(self.integer("archive.retention_days", 0, 1 << 20)? as i64)
                    .filter(|d| *d > 0),
                messages: Some(self.integer("archive.retention_messages", 0, 1 << 40)? as i64)
                    .filter(|m| *m > 0),
            },
            retention_interval: std::time::Duration::from_secs(self.integer(
                "archive.retention_interval_seconds",
                1,
                86_400,
            )?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mixd.toml");
        std::fs::write(&path, toml).expect("write");
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(Some(&path), |k| env.get(k).cloned())
    }

    const MINIMAL: &str =
        "secret = 's'\n[mix]\ndomain = 'mix.example.org'\n[muc]\ndomain = 'muc.example.org'\n";

    #[test]
    fn minimal_file_gets_defaults() {
        let c = load(MINIMAL, &[]).expect("valid");
        assert_eq!(c.server, "127.0.0.1:5347");
        assert_eq!(c.mix.secret, "s");
        assert_eq!(c.muc.domain, "muc.example.org");
        assert_eq!(c.database_url, "sqlite://data/mixd.db");
        assert_eq!(c.max_stanza_bytes, 262144);
    }

    #[test]
    fn environment_alone_is_enough() {
        let env: HashMap<&str, &str> = [
            ("MIXD_SERVER", "localhost:5347"),
            ("MIXD_MIX_DOMAIN", "mix.localhost"),
            ("MIXD_MUC_DOMAIN", "muc.localhost"),
            ("MIXD_SECRET", "x"),
            ("MIXD_DATABASE_URL", "postgres://mixd@127.0.0.1:5432/mixd"),
            ("MIXD_HTTP", "127.0.0.1:9000"),
        ]
        .into_iter()
        .collect();
        let c = Config::load(None, |k| env.get(k).map(|v| v.to_string())).expect("valid");
        assert_eq!(c.database_url, "postgres://mixd@127.0.0.1:5432/mixd");
        assert_eq!(c.http, Some("127.0.0.1:9000".parse().expect("addr")));
    }

    #[test]
    fn environment_overrides_file() {
        let c = load(MINIMAL, &[("MIXD_MAX_STANZA_BYTES", "4096")]).expect("valid");
        assert_eq!(c.max_stanza_bytes, 4096);
    }

    #[test]
    fn errors_name_the_key() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (
                "[mix]\ndomain='mix.x'\n[muc]\ndomain='muc.x'\n",
                &[],
                "`mix.secret`",
            ),
            (MINIMAL, &[("MIXD_MIX_DOMAIN", "a@b/c")], "`mix.domain`"),
            (MINIMAL, &[("MIXD_SERVER", "nohost")], "`server`"),
            (
                MINIMAL,
                &[("MIXD_MAX_STANZA_BYTES", "12")],
                "`limits.max_stanza_bytes`",
            ),
            (MINIMAL, &[("MIXD_HTTP", "here")], "`http`"),
            (
                MINIMAL,
                &[("MIXD_DATABASE_URL", "mysql://x")],
                "`database_url`",
            ),
            (
                MINIMAL,
                &[("MIXD_MUC_DOMAIN", "mix.example.org")],
                "`muc.domain`",
            ),
            (
                "secret='s'\nmix={domain='m.x'}\nmuc={domain='c.x'}\nlimits={max_stanza_bytes='big'}\n",
                &[],
                "`limits.max_stanza_bytes`",
            ),
            ("colour = 'blue'\n", &[], "`colour`"),
        ];
        for (file, env, key) in cases {
            let err = load(file, env).expect_err(key).to_string();
            assert!(err.contains(key), "{err} should name {key}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn example_file_is_valid_and_complete() {
        let text = include_str!("../mixd.example.toml");
        let c = load(text, &[]).expect("example config is valid");
        assert_eq!(c.mix.domain, "mix.localhost");
        for s in SETTINGS {
            let leaf = s.key.rsplit('.').next().unwrap_or(s.key);
            assert!(text.contains(leaf), "mixd.example.toml documents {}", s.key);
            assert!(text.contains(s.env), "mixd.example.toml names {}", s.env);
        }
    }
}
