//! Checks the crate against vectors/*.json; the kernel's vitest suite checks both JS backends
//! against the same files.
use mega_codec::{asp, deflate, frame, Code};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = format!("{}/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn hex(v: &Value) -> Vec<u8> {
    let s = v.as_str().unwrap();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn code(e: &Value) -> Option<&str> {
    e.as_str()
}

#[test]
fn asp_vectors() {
    let v = load("asp.json");
    for k in v["keys"].as_array().unwrap() {
        let scope = asp::Scope::parse(k["scope"].as_str().unwrap()).unwrap();
        let key =
            asp::derive_key(&hex(&k["master"]), k["sessionId"].as_str().unwrap(), scope).unwrap();
        assert_eq!(key.to_vec(), hex(&k["key"]));
    }
    for c in v["seals"].as_array().unwrap() {
        let key = asp::Key::new(&hex(&c["key"])).unwrap();
        let nonce: [u8; 12] = hex(&c["nonce"]).try_into().unwrap();
        let ts = c["timestamp"].as_u64().unwrap();
        let ns = c["ns"].as_str().unwrap().as_bytes();
        let sealed = asp::seal(&key, &nonce, ts, ns, &hex(&c["plaintext"]), false).unwrap();
        assert_eq!(sealed, hex(&c["sealed"]), "{}", c["name"]);
        assert_eq!(
            asp::open(&key, &sealed, ns, ts, 60_000, 1 << 20).unwrap(),
            hex(&c["plaintext"])
        );
    }
    // An `opens` or `rejects` case: open its sealed bytes with its key, namespace and clock.
    let open_case = |c: &Value| {
        let key = asp::Key::new(&hex(&c["key"])).unwrap();
        let ns = c["ns"].as_str().unwrap().as_bytes();
        asp::open(
            &key,
            &hex(&c["sealed"]),
            ns,
            c["now"].as_u64().unwrap(),
            60_000,
            1 << 20,
        )
    };
    for c in v["opens"].as_array().unwrap() {
        assert_eq!(open_case(c).unwrap(), hex(&c["plaintext"]), "{}", c["name"]);
    }
    for c in v["rejects"].as_array().unwrap() {
        assert_eq!(
            open_case(c).err().map(|e| e.code.as_str()),
            code(&c["error"]),
            "{}",
            c["name"]
        );
    }
    let r = &v["replay"];
    let o = &r["opener"];
    let mut opener = asp::Opener::new(
        &hex(&r["key"]),
        asp::Role::Server,
        o["windowMs"].as_u64().unwrap(),
        o["replayCapacity"].as_u64().unwrap() as usize,
        1 << 20,
    )
    .unwrap();
    // The same steps through the text form (`E:` + base64url) on a second opener: same outcomes.
    let mut text_opener = asp::Opener::new(
        &hex(&r["key"]),
        asp::Role::Server,
        o["windowMs"].as_u64().unwrap(),
        o["replayCapacity"].as_u64().unwrap() as usize,
        1 << 20,
    )
    .unwrap();
    for (i, s) in r["steps"].as_array().unwrap().iter().enumerate() {
        let sealed = hex(&s["sealed"]);
        let now = s["now"].as_u64().unwrap();
        let got = opener.open(&sealed, b"", now);
        assert_eq!(
            got.err().map(|e| e.code.as_str()),
            code(&s["error"]),
            "replay step {i}"
        );
        let mut text = vec![0u8; asp::text_len(sealed.len())];
        text[..2].copy_from_slice(asp::TEXT_PREFIX);
        mega_codec::b64::encode_into(&sealed, &mut text[2..]);
        let got = text_opener.open_text(&text, b"", now);
        assert_eq!(
            got.err().map(|e| e.code.as_str()),
            code(&s["error"]),
            "replay step {i}, text form"
        );
    }
}

#[test]
fn deflate_vectors() {
    let v = load("deflate.json");
    for c in v["stateless"].as_array().unwrap() {
        assert_eq!(
            deflate::inflate(&hex(&c["compressed"]), 1 << 20).unwrap(),
            hex(&c["plaintext"])
        );
    }
    let mut inf = deflate::Inflater::new(15, true, 1 << 20).unwrap();
    for c in v["takeover"].as_array().unwrap() {
        assert_eq!(
            inf.inflate(&hex(&c["compressed"])).unwrap(),
            &hex(&c["plaintext"])[..]
        );
    }
    for c in v["limits"].as_array().unwrap() {
        let got = deflate::inflate(
            &hex(&c["compressed"]),
            c["maxOutput"].as_u64().unwrap() as usize,
        );
        assert_eq!(got.err().map(|e| e.code.as_str()), code(&c["error"]));
    }
}

#[test]
fn frame_vectors() {
    let v = load("frames.json");
    for c in v["encode"].as_array().unwrap() {
        let got = frame::encode_frame(
            c["type"].as_str().unwrap(),
            c["id"].as_str(),
            c["ns"].as_str(),
            c["payload"].as_str().unwrap().as_bytes(),
        );
        match c.get("error") {
            Some(e) => assert_eq!(got.unwrap_err().code.as_str(), e.as_str().unwrap()),
            None => assert_eq!(
                String::from_utf8(got.unwrap()).unwrap(),
                c["frame"].as_str().unwrap()
            ),
        }
    }
    for c in v["validate"].as_array().unwrap() {
        let bytes = match c.get("frameHex") {
            Some(h) => hex(h),
            None => c["frame"].as_str().unwrap().as_bytes().to_vec(),
        };
        let got = frame::validate_frame(&bytes);
        match c.get("error") {
            Some(_) => assert_eq!(got.unwrap_err().code, Code::Malformed, "{:?}", c),
            None => {
                let h = got.unwrap_or_else(|e| panic!("{e} {c:?}"));
                let want = &c["header"];
                assert_eq!(h.ty, want["type"].as_str().unwrap());
                assert_eq!(h.id.as_deref(), want["id"].as_str());
                assert_eq!(h.ns.as_deref(), want["ns"].as_str());
                let (s, e) = h.payload.unwrap_or((0, 0));
                assert_eq!(
                    (s as u64, (e - s) as u64),
                    (
                        want["payloadOffset"].as_u64().unwrap(),
                        want["payloadLength"].as_u64().unwrap()
                    )
                );
            }
        }
    }
    for c in v["server"].as_array().unwrap() {
        let (ty, ns, target, origin) = (
            c["type"].as_str().unwrap(),
            c["ns"].as_str().unwrap(),
            c["target"].as_str().unwrap(),
            c["origin"].as_str().unwrap(),
        );
        let bytes = frame::encode_server_frame(
            c["kind"].as_u64().unwrap() as u8,
            ty,
            ns,
            target,
            origin,
            &hex(&c["payload"]),
        )
        .unwrap();
        assert_eq!(bytes, hex(&c["bytes"]));
        let d = frame::decode_server_frame(&bytes).unwrap();
        assert_eq!((d.ty, d.ns, d.target, d.origin), (ty, ns, target, origin));
        assert_eq!(bytes[d.payload.0..d.payload.1].to_vec(), hex(&c["payload"]));
    }
    for c in v["serverDecodeErrors"].as_array().unwrap() {
        assert_eq!(
            frame::decode_server_frame(&hex(c)).unwrap_err().code,
            Code::Malformed,
            "{c}"
        );
    }
}
