//! `mega-hub` binary: configuration from MEGA_WSHUB_* (exit 2 when invalid), listen, serve until
//! SIGTERM/SIGINT, then drain (bridges closed with 4503) and exit 0. A second signal exits 1.
use std::collections::HashMap;
use std::process::ExitCode;

use mega_hub::config::Config;
use mega_hub::protocol::PROTOCOL_VERSION;
use mega_hub::server::Server;
use tokio::signal::unix::{signal, SignalKind};

fn main() -> ExitCode {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!(
            "mega-hub: the Mega hub sidecar (protocol v{PROTOCOL_VERSION})\n\n\
             Environment:\n  \
             MEGA_WSHUB_TOKENS           required, comma-separated bridge tokens (>= 32 bytes each in production)\n  \
             MEGA_WSHUB_ADMIN_TOKENS     comma-separated admin tokens: may also disconnect/move other bridges' sessions\n  \
             MEGA_WSHUB_HOST             listen address (default 127.0.0.1)\n  \
             MEGA_WSHUB_PORT             listen port (default 3100; 0 = any free port)\n  \
             MEGA_WSHUB_HEARTBEAT_MS     heartbeat interval (default 25000; a bridge silent for 2x is dropped)\n  \
             MEGA_WSHUB_MAX_FRAME_BYTES  largest message in either form (default 1048576)\n  \
             MEGA_WSHUB_DRAIN_MS         how long SIGTERM waits for bridges to close (default 5000)\n  \
             MEGA_WSHUB_QUEUE_FRAMES     frames queued per bridge before it is evicted with 1013 (default 16384)\n  \
             MEGA_WSHUB_QUEUE_BYTES      bytes queued per bridge before it is evicted with 1013 (default 33554432)\n  \
             MEGA_WSHUB_WRITE_TIMEOUT_MS a bridge whose socket accepts nothing this long is evicted (default 10000)\n  \
             MEGA_ENV / NODE_ENV         `production` refuses tokens shorter than 32 bytes (development warns)\n  \
             MEGA_WSHUB_ID               hub id reported in register_ok (default hub-<pid>)\n\n\
             Serves bridges (WebSocket), GET /metrics (Prometheus) and GET /healthz on the same port."
        );
        return ExitCode::SUCCESS;
    }
    let env: HashMap<String, String> = std::env::vars().collect();
    let cfg = match Config::from_env(&env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mega-hub: {e}");
            return ExitCode::from(2);
        }
    };
    for w in &cfg.warnings {
        eprintln!("mega-hub: warning: {w}");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mega-hub: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        let addr = format!("{}:{}", cfg.host, cfg.port);
        let listener = match tokio::net::TcpListener::bind(&addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("mega-hub: cannot listen on {addr}: {e}");
                return ExitCode::from(1);
            }
        };
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            eprintln!("mega-hub: cannot install signal handlers");
            return ExitCode::from(1);
        };
        let local = listener.local_addr().map(|a| a.to_string()).unwrap_or(addr);
        // Tests and `mega ws-hub` read this line to learn the port (MEGA_WSHUB_PORT=0).
        println!(
            "mega-hub listening on {local} (protocol v{PROTOCOL_VERSION}, heartbeat {} ms, max frame {} bytes, id {})",
            cfg.heartbeat_ms, cfg.max_frame_bytes, cfg.hub_id
        );
        let server = Server::new(cfg);
        let stop = std::sync::Arc::new(tokio::sync::Notify::new());
        let stop2 = stop.clone();
        tokio::spawn(async move {
            let mut seen = 0;
            loop {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                seen += 1;
                if seen == 1 {
                    eprintln!("mega-hub: draining (bridges are closed with 4503)");
                    stop2.notify_one();
                } else {
                    eprintln!("mega-hub: second signal, exiting without finishing the drain");
                    std::process::exit(1);
                }
            }
        });
        server.run(listener, async move { stop.notified().await }).await;
        eprintln!("mega-hub: drained, exiting");
        ExitCode::SUCCESS
    })
}
