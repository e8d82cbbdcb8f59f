//! A scansion script, read once: the runner's header settings, the clients (jasca's parser), and
//! the actions as owned steps that remember their line for failure messages.

use std::path::Path;

use jasca::{Action, Context, Entity};
use minidom::Element;

/// Which side of mixd the runner plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// The runner is the XMPP server and talks XEP-0114 to mixd directly.
    Component,
    /// Real c2s clients through a real Prosody with mixd attached.
    Client,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Component => "component",
            Mode::Client => "client",
        }
    }

    /// The default namespace of stanzas as the script's clients see them: the component
    /// namespace on a XEP-0114 link, jabber:client on a c2s stream.
    pub fn stanza_ns(self) -> &'static str {
        match self {
            Mode::Component => "jabber:component:accept",
            Mode::Client => "jabber:client",
        }
    }
}

/// Settings read from the script's header comments (the runner's own extensions; scansion
/// itself ignores them as comments):
/// - `# mixd-env: KEY=VALUE KEY2=VALUE2` environment for mixd;
/// - `# mixd-channels: coven, secret:private` channels created through the admin API first;
/// - `# modes: component` or `# modes: client` to run in one mode only (default: both).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub env: Vec<(String, String)>,
    /// (name, public)
    pub channels: Vec<(String, bool)>,
    pub modes: Option<Vec<Mode>>,
}

impl Settings {
    pub fn runs_in(&self, mode: Mode) -> bool {
        self.modes.as_ref().is_none_or(|m| m.contains(&mode))
    }
}

/// What one action does.
#[derive(Debug, Clone)]
pub enum Verb {
    Connect,
    Disconnect,
    Send(String),
    Receive(String),
    ReceiveNothing,
    /// `mixd disconnects`, where `[Component] mixd` names the service under test: mixd stops
    /// (SIGTERM, a clean shutdown).
    ServiceStop,
    /// `mixd connects`: mixd starts again on the same database.
    ServiceStart,
}

/// One action of the script.
#[derive(Debug, Clone)]
pub struct Step {
    /// The client's name as the script spells it.
    pub who: String,
    pub verb: Verb,
    /// 1-based line of the action in the script.
    pub line: usize,
}

impl Step {
    /// `line 12, "Alice receives:"`, for failure messages.
    pub fn describe(&self) -> String {
        let verb = match self.verb {
            Verb::Connect => "connects",
            Verb::Disconnect => "disconnects",
            Verb::Send(_) => "sends:",
            Verb::Receive(_) => "receives:",
            Verb::ReceiveNothing => "receives: nothing",
            Verb::ServiceStop => "disconnects",
            Verb::ServiceStart => "connects",
        };
        format!("line {}, \"{} {verb}\"", self.line, self.who)
    }
}

/// A parsed script.
#[derive(Debug, Clone)]
pub struct Script {
    pub name: String,
    pub settings: Settings,
    /// The script's entities, clients with a full JID each.
    pub context: Context,
    pub steps: Vec<Step>,
}

impl Script {
    pub fn load(path: &Path) -> Result<Script, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Script::parse(&name, &text)
    }

    pub fn parse(name: &str, text: &str) -> Result<Script, String> {
        let settings = settings(text)?;
        let spec = jasca::parse_spec(text).map_err(|t| {
            format!(
                "scansion syntax error at line {}: {:?}",
                t.position.location_line(),
                t.position.fragment().lines().next().unwrap_or_default()
            )
        })?;
        let mut context = spec.context.clone();
        bind(&mut context);
        let mut steps = Vec::new();
        // Actions are found again in the text, in order, to know their line numbers.
        let mut cursor = 0;
        let lines: Vec<&str> = text.lines().collect();
        for action in &spec.actions {
            let (who, verb, keyword) = match action {
                Action::Connect(n) => (n, Verb::Connect, "connects"),
                Action::Disconnect(n) => (n, Verb::Disconnect, "disconnects"),
                Action::Send(n, xml) => (n, Verb::Send((*xml).to_owned()), "sends:"),
                Action::Receive(n, xml) => (n, Verb::Receive((*xml).to_owned()), "receives:"),
                Action::ReceiveNone(n) => (n, Verb::ReceiveNothing, "receives: nothing"),
            };
            // A [Component] is mixd itself: it can only stop and start again.
            let verb = match (context.get(who), verb) {
                (Some(Entity::Client(_)), verb) => verb,
                (Some(Entity::Component(_)), Verb::Connect) => Verb::ServiceStart,
                (Some(Entity::Component(_)), Verb::Disconnect) => Verb::ServiceStop,
                (Some(Entity::Component(_)), _) => {
                    return Err(format!(
                        "'{who}' is the [Component] under test: it only connects and disconnects"
                    ));
                }
                _ => {
                    return Err(format!(
                        "action for '{who}', who is not a [Client] of the script"
                    ));
                }
            };
            let found = lines[cursor..].iter().position(|l| {
                l.strip_prefix(who.as_str())
                    .is_some_and(|rest| rest.trim() == keyword)
            });
            let line = match found {
                Some(i) => {
                    cursor += i + 1;
                    cursor
                }
                None => 0,
            };
            steps.push(Step {
                who: who.clone(),
                verb,
                line,
            });
        }
        Ok(Script {
            name: name.to_owned(),
            settings,
            context,
            steps,
        })
    }

    /// The clients of the script: (name, jid, password), in a stable order.
    pub fn clients(&self) -> Vec<(String, jid::Jid, String)> {
        let mut v: Vec<_> = self
            .context
            .iter()
            .filter_map(|(n, e)| match e {
                Entity::Client(c) => Some((n.clone(), c.jid.clone(), c.password.clone())),
                Entity::Component(_) => None,
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

/// Give every client without a resource a readable, stable one (jasca's own `bind` picks a
/// random number, which can collide between two clients of the same account).
fn bind(context: &mut Context) {
    for (name, entity) in context.iter_mut() {
        let Entity::Client(c) = entity else {
            continue;
        };
        if let Err(bare) = c.jid.try_as_full() {
            let res: String = name
                .chars()
                .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' })
                .collect();
            if let Ok(full) = bare.with_resource_str(&format!("scansion-{res}")) {
                c.jid = full.into();
            }
        }
    }
}

fn settings(text: &str) -> Result<Settings, String> {
    let mut s = Settings::default();
    for (i, line) in text.lines().enumerate() {
        // The header ends where the actions begin (the `-----` separator).
        if line.starts_with("---") {
            break;
        }
        let Some(comment) = line.strip_prefix('#') else {
            continue;
        };
        let Some((key, value)) = comment.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let bad = |what: &str| format!("line {}: {what}: {line}", i + 1);
        match key.trim() {
            "mixd-env" => {
                for pair in value.split_whitespace() {
                    let (k, v) = pair.split_once('=').ok_or_else(|| bad("want KEY=VALUE"))?;
                    s.env.push((k.to_owned(), v.to_owned()));
                }
            }
            "mixd-channels" => {
                for item in value.split(',').map(str::trim).filter(|x| !x.is_empty()) {
                    let (name, public) = match item.split_once(':') {
                        None => (item, true),
                        Some((n, "public")) => (n, true),
                        Some((n, "private")) => (n, false),
                        Some(_) => return Err(bad("want name, name:public or name:private")),
                    };
                    s.channels.push((name.trim().to_owned(), public));
                }
            }
            "modes" => {
                let mut modes = Vec::new();
                for m in value.split([',', ' ']).filter(|x| !x.is_empty()) {
                    modes.push(match m {
                        "component" => Mode::Component,
                        "client" => Mode::Client,
                        _ => return Err(bad("modes are component and client")),
                    });
                }
                s.modes = Some(modes);
            }
            _ => {}
        }
    }
    Ok(s)
}

/// Build the stanza an action's XML describes, in the mode's stanza namespace, with the
/// script's `${Name's JID}` / `${Name's full JID}` variables replaced.
///
/// Done here rather than with `jasca::read_actions`: that one panics on scripts it dislikes,
/// loses the order between sends and receives, and adds `to` = the bare JID to every expected
/// stanza, which then fails to match what a service sends to the client's full JID.
pub fn element(xml: &str, ns: &str, context: &Context) -> Result<Element, String> {
    let wrapped = format!(
        "<x xmlns='{ns}' xmlns:scansion='{}'>{xml}</x>",
        jasca::element::SCANSION_NS
    );
    let mut root: Element = wrapped
        .parse()
        .map_err(|e| format!("invalid XML in the script: {e}\n{xml}"))?;
    let count = root.children().count();
    let el = match (root.unshift_child(), count) {
        (Some(el), 1) => el,
        _ => return Err(format!("want exactly one element, found {count}:\n{xml}")),
    };
    Ok(jasca::ScanElement::new(el)
        .apply_context(context)
        .into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "# A title\n# mixd-env: A=1 B=two\n# mixd-channels: coven, secret:private\n\
        # modes: component\n\n[Client] Alice\n\tjid: alice@localhost\n\tpassword: alice\n\n-----\n\n\
        Alice connects\n\nAlice sends:\n\t<iq type='get' id='1' to='mix.localhost'>\n\t\t<ping xmlns='urn:xmpp:ping'/>\n\t</iq>\n\n\
        Alice receives:\n\t<iq type='result' id='1' to=\"${Alice's full JID}\"/>\n\nAlice receives: nothing\n";

    #[test]
    fn header_settings_steps_and_lines() {
        let s = Script::parse("t.scs", SCRIPT).expect("parse");
        assert_eq!(
            s.settings.env,
            vec![("A".into(), "1".into()), ("B".into(), "two".into())]
        );
        assert_eq!(
            s.settings.channels,
            vec![("coven".into(), true), ("secret".into(), false)]
        );
        assert!(s.settings.runs_in(Mode::Component) && !s.settings.runs_in(Mode::Client));
        let lines: Vec<_> = s.steps.iter().map(|s| s.line).collect();
        assert_eq!(lines, vec![12, 14, 19, 22]);
        let Verb::Receive(xml) = &s.steps[2].verb else {
            panic!("{:?}", s.steps[2])
        };
        let el = element(xml, Mode::Component.stanza_ns(), &s.context).expect("element");
        assert_eq!(el.attr("to"), Some("alice@localhost/scansion-Alice"));
        assert_eq!(el.ns(), "jabber:component:accept");
    }

    #[test]
    fn bad_xml_and_unknown_names_are_errors_not_panics() {
        let s = Script::parse("t.scs", SCRIPT).expect("parse");
        assert!(element("<iq>", "jabber:client", &s.context).is_err());
        assert!(element("<a/><b/>", "jabber:client", &s.context).is_err());
        let unknown = SCRIPT.replace("Alice receives: nothing", "Bob receives: nothing");
        assert!(Script::parse("t.scs", &unknown).is_err());
    }
}
