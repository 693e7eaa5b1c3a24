//! The hub against protocol/vectors: every single-frame vector through the parser, every exchange
//! script through the routing core (the same `Link`/`Hub` code the server drives, without sockets).
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mega_hub::config::Config;
use mega_hub::hub::{close, Gone, Handle, Hub, Link, OutFrame, Verdict};
use mega_hub::metrics::Metrics;
use mega_hub::protocol::parse_inbound;
use serde_json::Value;
use tokio::sync::mpsc;

fn load(name: &str) -> Value {
    let path = format!("{}/protocol/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn text_of(case: &Value) -> String {
    match case.get("raw") {
        Some(r) => r.as_str().unwrap().to_owned(),
        None => case["frame"].to_string(),
    }
}

#[test]
fn single_frames() {
    let v = load("messages.json");
    let mut n = 0;
    for case in v["valid"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["direction"] == "toHub")
    {
        let t = text_of(case);
        assert!(
            parse_inbound(t.as_bytes()).is_ok(),
            "{}: {:?}",
            case["name"],
            parse_inbound(t.as_bytes()).err()
        );
        n += 1;
    }
    for case in v["invalid"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["direction"] == "toHub")
    {
        let t = text_of(case);
        let e = parse_inbound(t.as_bytes()).expect_err(case["name"].as_str().unwrap());
        assert_eq!(e.code.as_str(), case["error"], "{}", case["name"]);
        n += 1;
    }
    assert!(n > 50, "vectors went missing ({n})");
}

/// `"$any"` in the expected frame matches any value at that place.
fn matches(exp: &Value, got: &Value) -> bool {
    match (exp, got) {
        (Value::String(s), _) if s == "$any" => true,
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, v)| b.get(k).is_some_and(|g| matches(v, g)))
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| matches(x, y))
        }
        _ => exp == got,
    }
}

struct B {
    link: Link,
    rx: mpsc::Receiver<Arc<OutFrame>>,
    ctl: mpsc::UnboundedReceiver<(u16, String)>,
    closed: Option<u16>,
    silent: bool,
}

impl B {
    fn next(&mut self) -> Option<Value> {
        while let Ok(f) = self.rx.try_recv() {
            let v: Value = serde_json::from_str(&f.text).unwrap();
            if v["type"] != "heartbeat" {
                return Some(v);
            }
        }
        None
    }
}

fn why(code: u16) -> Gone {
    match code {
        close::REPLACED => Gone::Replaced,
        close::HEARTBEAT => Gone::HeartbeatTimeout,
        _ => Gone::Evicted,
    }
}

fn run_script(script: &Value, tokens: &[&str], admin_tokens: &[&str]) {
    let name = script["name"].as_str().unwrap();
    let cfg = Config::with_tokens(tokens).with_admin_tokens(admin_tokens);
    let hb = cfg.heartbeat_ms;
    let hub = Mutex::new(Hub::new(Arc::new(cfg), Arc::new(Metrics::default())));
    let mut bs: HashMap<String, B> = HashMap::new();
    let mut next_conn = 1;
    let mut now = 1_000u64;
    let send = |bs: &mut HashMap<String, B>, who: &str, text: &str, now: u64| {
        let b = bs
            .get_mut(who)
            .unwrap_or_else(|| panic!("{name}: no bridge {who}"));
        assert!(b.closed.is_none(), "{name}: {who} is closed");
        if let Verdict::Close(c, _) = b.link.on_text(&hub, text.as_bytes(), now) {
            b.closed = Some(c);
            b.link.on_closed(&hub, why(c));
        }
    };
    for (i, step) in script["steps"].as_array().unwrap().iter().enumerate() {
        let at = format!("{name} step {i}: {step}");
        let connect = |bs: &mut HashMap<String, B>, who: &str, conn: u64| {
            let (tx, rx) = mpsc::channel(1024);
            let (ctl_tx, ctl) = mpsc::unbounded_channel();
            let link = Link::new(conn, Handle::new(tx, ctl_tx, usize::MAX), now);
            bs.insert(
                who.to_owned(),
                B {
                    link,
                    rx,
                    ctl,
                    closed: None,
                    silent: false,
                },
            );
        };
        if let Some(who) = step.get("connect").and_then(Value::as_str) {
            connect(&mut bs, who, next_conn);
            next_conn += 1;
        } else if let Some((who, token)) = step
            .get("register")
            .and_then(Value::as_str)
            .map(|w| (w, tokens[0]))
            .or_else(|| {
                step.get("registerAdmin")
                    .and_then(Value::as_str)
                    .map(|w| (w, admin_tokens[0]))
            })
        {
            connect(&mut bs, who, next_conn);
            next_conn += 1;
            let reg = serde_json::json!({ "type": "register", "payload": { "token": token, "bridgeId": who } });
            send(&mut bs, who, &reg.to_string(), now);
            let got = bs.get_mut(who).unwrap().next().expect(&at);
            assert_eq!(
                (got["type"].as_str(), got["payload"]["bridgeId"].as_str()),
                (Some("register_ok"), Some(who)),
                "{at}"
            );
        } else if let Some(who) = step.get("send").and_then(Value::as_str) {
            send(&mut bs, who, &step["frame"].to_string(), now);
        } else if let Some(who) = step.get("sendRaw").and_then(Value::as_str) {
            send(&mut bs, who, step["text"].as_str().unwrap(), now);
        } else if let Some(who) = step.get("expect").and_then(Value::as_str) {
            let got = bs
                .get_mut(who)
                .unwrap()
                .next()
                .unwrap_or_else(|| panic!("{at}: nothing arrived"));
            assert!(matches(&step["frame"], &got), "{at}\n  got {got}");
        } else if let Some(list) = step.get("expectNothing").and_then(Value::as_array) {
            for who in list {
                let b = bs.get_mut(who.as_str().unwrap()).unwrap();
                assert_eq!(b.next(), None, "{at}");
            }
        } else if let Some(who) = step.get("expectClose").and_then(Value::as_str) {
            let b = bs.get_mut(who).unwrap();
            if b.closed.is_none() {
                if let Ok((c, _)) = b.ctl.try_recv() {
                    b.closed = Some(c);
                    b.link.on_closed(&hub, why(c));
                }
            }
            assert_eq!(b.closed.map(u64::from), step["code"].as_u64(), "{at}");
        } else if let Some(who) = step.get("close").and_then(Value::as_str) {
            let b = bs.get_mut(who).unwrap();
            b.link.on_closed(&hub, Gone::Closed);
            b.closed = Some(1000);
        } else if let Some(who) = step.get("silence").and_then(Value::as_str) {
            bs.get_mut(who).unwrap().silent = true;
        } else if step.get("waitHeartbeatTimeout").is_some() {
            now += 2 * hb + 1;
            for b in bs.values_mut().filter(|b| b.closed.is_none()) {
                if !b.silent {
                    // Live bridges keep sending heartbeats while the silent ones time out.
                    assert_eq!(
                        b.link
                            .on_text(&hub, br#"{"type":"heartbeat","payload":{}}"#, now),
                        Verdict::Continue
                    );
                }
                if b.link.expired(now, hb) {
                    b.closed = Some(close::HEARTBEAT);
                    b.link.on_closed(&hub, Gone::HeartbeatTimeout);
                }
            }
        } else {
            panic!("{at}: unknown step");
        }
    }
}

#[test]
fn exchange_scripts() {
    let v = load("exchanges.json");
    let list = |k: &str| -> Vec<&str> {
        v["hub"][k]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect()
    };
    let (tokens, admin) = (list("tokens"), list("adminTokens"));
    let scripts = v["scripts"].as_array().unwrap();
    assert!(scripts.len() >= 15);
    for s in scripts {
        run_script(s, &tokens, &admin);
    }
}
