//! The native Perfetto trace against Perfetto's own schema, without the
//! kernel: the writer's stacks path with made-up frames, its bounded
//! interning, and a committed recording drawn in both timeline formats.
//! The kernel tests check the timelines of real runs
//! (`assert_timeline_agrees`, tests/tests/recording.rs).

use std::{collections::BTreeMap, path::Path, process::Command};

use reaper_trace::{
    output::{
        protobuf::Message,
        timeline::{
            model::{Instant, Sink, Slice, Track},
            perfetto::PerfettoSink,
        },
    },
    recording::Meta,
    trace::stack::Symbol,
};
use reaper_trace_tests::*;
use serde_json::{Value, json};

const LIBC: &str = "/usr/lib/x86_64-linux-gnu/libc.so.6";

fn symbol(module: &str, address: u64, function: Option<&str>, at: Option<(&str, u32)>) -> Symbol {
    Symbol {
        module: module.into(),
        address,
        function: function.map(str::to_owned),
        file: at.map(|(file, _)| file.to_owned()),
        line: at.map(|(_, line)| line),
    }
}

/// A popen leak's stack, innermost first, as the stack module gives it:
/// libc's clone3 without a symbol, popen, then the caller with its line.
fn popen_stack() -> Vec<Symbol> {
    vec![
        symbol(LIBC, 0xf7a4d, None, None),
        symbol(LIBC, 0x78a11, Some("popen"), None),
        symbol(
            "/work/leak",
            0x1189,
            Some("main"),
            Some(("/work/leak.c", 12)),
        ),
    ]
}

/// A helper thread's `signal(SIGCHLD, SIG_IGN)`.
fn sigaction_stack() -> Vec<Symbol> {
    vec![
        symbol(LIBC, 0x3c0a0, Some("__libc_sigaction"), None),
        symbol(LIBC, 0x3c2f5, Some("signal"), None),
        symbol(
            "/work/leak",
            0x1201,
            Some("helper"),
            Some(("/work/leak.c", 30)),
        ),
        symbol(LIBC, 0x89134, Some("start_thread"), None),
    ]
}

fn write_trace(name: &str, sink: PerfettoSink<Vec<u8>>) -> std::path::PathBuf {
    let path = temp_path(name).with_extension("pftrace");
    std::fs::write(&path, sink.into_inner()).unwrap();
    path
}

fn instant<'a>(
    name: &'a str,
    category: &'a str,
    ts_ns: u64,
    args: Value,
    stack: Option<&'a [Symbol]>,
) -> Instant<'a> {
    Instant {
        name,
        category,
        ts_ns,
        args,
        flow_out: None,
        stack,
    }
}

/// What `perfetto_check.py` says of a frame: outermost first.
fn frames(stack: &[Symbol]) -> Value {
    stack
        .iter()
        .rev()
        .map(|s| {
            json!({
                "function": s.function, "file": s.file, "line": s.line,
                "mapping": s.module, "rel_pc": s.address,
            })
        })
        .collect()
}

#[test]
fn stacks_on_fork_and_sigaction_instants_pass_perfettos_schema() {
    let mut sink = PerfettoSink::new(Vec::new());
    let meta = Meta {
        kernel_release: "6.18.0-test".into(),
        ..Meta::default()
    };
    let (parent, child) = (Track { pid: 40, uuid: 1 }, Track { pid: 41, uuid: 2 });
    let (popen, sigaction) = (popen_stack(), sigaction_stack());
    sink.start(&meta).unwrap();
    sink.describe(parent, Some("leak")).unwrap();
    sink.sigaction(
        parent,
        &instant(
            "SIGCHLD set to SIG_IGN",
            "sigaction",
            1_000,
            json!({"flags": "0"}),
            Some(&sigaction),
        ),
    )
    .unwrap();
    sink.describe(child, Some("leak")).unwrap();
    let mut fork = instant("fork", "fork", 2_000, json!({"child": 41}), Some(&popen));
    fork.flow_out = Some(1);
    sink.fork(parent, child, &fork).unwrap();
    // The child execs: its track is renamed.
    sink.describe(child, Some("sh")).unwrap();
    sink.slice(
        child,
        &Slice {
            name: "running",
            category: "lifecycle",
            color: "good",
            start_ns: 2_000,
            end_ns: 5_000,
            args: json!({"comm": "sh"}),
            flow_in: Some(1),
        },
    )
    .unwrap();
    sink.instant(
        child,
        &instant(
            "exit 0",
            "event",
            5_000,
            json!({"parent": 40, "ret": -10}),
            None,
        ),
    )
    .unwrap();
    sink.finish().unwrap();
    let trace = write_trace("stacks", sink);
    let summary = perfetto_check(&trace);

    assert_eq!(
        summary["system"],
        json!({"sysname": "Linux", "release": "6.18.0-test"})
    );
    assert_eq!(
        summary["tracks"],
        json!([
            {"uuid": 1, "pid": 40, "name": "leak"},
            {"uuid": 2, "pid": 41, "name": "sh"},
        ])
    );
    assert_eq!(
        summary["instants"],
        json!([
            {
                "uuid": 1, "pid": 40, "name": "SIGCHLD set to SIG_IGN", "category": "sigaction",
                "ts": 1000, "args": {"flags": "0"}, "flow_out": [],
                "callstack": frames(&sigaction),
            },
            {
                "uuid": 1, "pid": 40, "name": "fork", "category": "fork", "ts": 2000,
                "args": {"child": 41}, "flow_out": [1], "callstack": frames(&popen),
            },
            {
                "uuid": 2, "pid": 41, "name": "exit 0", "category": "event", "ts": 5000,
                "args": {"parent": 40, "ret": -10}, "flow_out": [], "callstack": null,
            },
        ])
    );
    // The function and line users need, by name.
    assert_eq!(
        summary["instants"][1]["callstack"][0],
        json!({"function": "main", "file": "/work/leak.c", "line": 12,
               "mapping": "/work/leak", "rel_pc": 0x1189})
    );
    assert_eq!(
        summary["instants"][1]["callstack"][2]["function"],
        Value::Null,
        "no made-up name for a frame without a symbol"
    );
    assert_eq!(
        summary["slices"],
        json!([{
            "uuid": 2, "pid": 41, "name": "running", "category": "lifecycle",
            "ts": 2000, "dur": 3000, "args": {"comm": "sh"}, "flow_in": [1],
        }])
    );
    assert_eq!(
        summary["flows"],
        json!([{
            "id": 1,
            "from": {"pid": 40, "name": "fork", "ts": 2000},
            "to": {"pid": 41, "name": "running", "ts": 2000},
        }])
    );
}

#[test]
fn interning_resets_keep_every_reference_valid() {
    // Few entries kept: the tables are dropped and redefined many times.
    let mut sink = PerfettoSink::with_intern_limit(Vec::new(), 10);
    let track = Track { pid: 7, uuid: 1 };
    sink.describe(track, Some("storm")).unwrap();
    let (popen, sigaction) = (popen_stack(), sigaction_stack());
    for i in 0..40u64 {
        let stack = if i % 3 == 0 { &popen } else { &sigaction };
        let name = format!("fork {}", i % 7);
        sink.instant(
            track,
            &instant(&name, "fork", i, json!({"child": i}), Some(stack)),
        )
        .unwrap();
    }
    let summary = perfetto_check(&write_trace("resets", sink));
    let instants = summary["instants"].as_array().unwrap();
    assert_eq!(instants.len(), 40);
    for (i, e) in instants.iter().enumerate() {
        let stack = if i % 3 == 0 { &popen } else { &sigaction };
        assert_eq!(e["name"], format!("fork {}", i % 7));
        assert_eq!(e["args"]["child"], i);
        assert_eq!(e["callstack"], frames(stack), "instant {i}");
    }
}

/// `report` on the committed demo recording, in a format.
fn report(format: &str) -> Vec<u8> {
    let recording =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/read_recording/demo.rtrace");
    report_bytes(&recording, &["--format", format])
}

/// A JSON time in µs, in ns: exact for a time it wrote from ns (parsing
/// a float back can be an ulp off, far below a ns).
fn ns(us: &Value) -> i64 {
    (us.as_f64().unwrap() * 1000.0).round() as i64
}

/// The two formats draw the same things: the JSON's spans, instants,
/// process names and flows are the native trace's, to the ns. The native
/// one has more: the fork instants the flows start from (and, with
/// stacks, sigaction instants).
#[test]
fn native_and_json_timelines_of_a_recording_agree() {
    let trace = temp_path("demo").with_extension("pftrace");
    std::fs::write(&trace, report("perfetto")).unwrap();
    let native = perfetto_check(&trace);
    let json: Value = serde_json::from_slice(&report("perfetto-json")).expect("JSON");
    let events = json["traceEvents"].as_array().unwrap();
    let of = |ph: &str| -> Vec<&Value> { events.iter().filter(|e| e["ph"] == ph).collect() };
    let list = |kind: &str| native[kind].as_array().unwrap().clone();

    // (pid, name, ts ns, dur ns, args)
    let mut json_slices: Vec<_> = of("X")
        .into_iter()
        .map(|e| {
            let mut args = e["args"].clone();
            // The JSON keeps a null argument (a reap by no one); the
            // native trace leaves it out.
            args.as_object_mut().unwrap().retain(|_, v| !v.is_null());
            let (pid, name) = (int(&e["pid"]), e["name"].to_string());
            (pid, name, ns(&e["ts"]), ns(&e["dur"]), args)
        })
        .collect();
    let mut native_slices: Vec<_> = list("slices")
        .iter()
        .map(|s| {
            let (pid, name) = (int(&s["pid"]), s["name"].to_string());
            (pid, name, int(&s["ts"]), int(&s["dur"]), s["args"].clone())
        })
        .collect();
    let order = |a: &(i64, String, i64, i64, Value), b: &(i64, String, i64, i64, Value)| {
        (a.0, &a.1, a.2).cmp(&(b.0, &b.1, b.2))
    };
    json_slices.sort_by(order);
    native_slices.sort_by(order);
    assert_eq!(json_slices, native_slices);
    assert!(json_slices.len() >= 10, "{json_slices:?}");

    // (pid, name, ts ns, args); the native fork instants are extra.
    let mut json_instants: Vec<_> = of("i")
        .into_iter()
        .map(|e| {
            let (pid, name) = (int(&e["pid"]), e["name"].to_string());
            (pid, name, ns(&e["ts"]), e["args"].to_string())
        })
        .collect();
    let mut native_instants: Vec<_> = list("instants")
        .iter()
        .filter(|e| e["category"] == "event")
        .map(|e| {
            let (pid, name) = (int(&e["pid"]), e["name"].to_string());
            (pid, name, int(&e["ts"]), e["args"].to_string())
        })
        .collect();
    json_instants.sort();
    native_instants.sort();
    assert_eq!(json_instants, native_instants);

    // Process names: the JSON's last `comm (pid)` per pid.
    let json_names: BTreeMap<i64, String> = of("M")
        .into_iter()
        .map(|e| {
            (
                int(&e["pid"]),
                e["args"]["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let native_names: BTreeMap<i64, String> = list("tracks")
        .iter()
        .filter(|t| !t["name"].is_null())
        .map(|t| {
            let pid = int(&t["pid"]);
            (pid, format!("{} ({pid})", t["name"].as_str().unwrap()))
        })
        .collect();
    assert_eq!(json_names, native_names);

    // Flows: from the parent at the fork to the child, both ends.
    let json_flows: Vec<_> = of("s")
        .into_iter()
        .zip(of("f"))
        .map(|(s, f)| {
            assert_eq!(s["id"], f["id"]);
            (int(&s["pid"]), int(&f["pid"]), ns(&s["ts"]))
        })
        .collect();
    let native_flows: Vec<_> = list("flows")
        .iter()
        .map(|f| {
            assert_eq!(f["from"]["ts"], f["to"]["ts"], "{f}");
            (
                int(&f["from"]["pid"]),
                int(&f["to"]["pid"]),
                int(&f["from"]["ts"]),
            )
        })
        .collect();
    assert_eq!(json_flows, native_flows);
    assert!(!native_flows.is_empty());
}

/// The checker's stderr for a trace it must reject.
fn rejected(name: &str, bytes: &[u8]) -> String {
    let path = temp_path(name).with_extension("pftrace");
    std::fs::write(&path, bytes).unwrap();
    let out = Command::new(perfetto_python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/perfetto_check.py"))
        .arg(&path)
        .output()
        .expect("run perfetto_check.py");
    assert_eq!(out.status.code(), Some(1), "{name} passed the checks");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A one-packet trace: sequence 1, state cleared, `fill` adding the rest.
fn one_packet(fill: impl FnOnce(&mut Message)) -> Vec<u8> {
    let mut trace = Message::new();
    trace.message(1, |p| {
        p.uint(10, 1).uint(13, 3);
        fill(p);
    });
    trace.as_bytes().to_vec()
}

/// The checks the tests rely on do fail: a field number Perfetto does not
/// know, an iid or a track used but never defined, bytes that are no trace.
#[test]
fn the_checker_rejects_what_perfetto_would_not_read() {
    let stderr = rejected("not-protobuf", b"\x0a\xff\xff");
    assert!(stderr.contains("not a Perfetto Trace"), "{stderr}");

    // TrackEvent has no field 57.
    let unknown = one_packet(|p| {
        p.uint(8, 1).message(11, |e| {
            e.uint(9, 3).uint(57, 1);
        });
    });
    let stderr = rejected("unknown-field", &unknown);
    assert!(
        stderr.contains("trace.packet[0].track_event[0]: unknown field 57"),
        "{stderr}"
    );

    // name_iid 5 on track 9: neither defined.
    let undefined = one_packet(|p| {
        p.uint(8, 1).message(11, |e| {
            e.uint(9, 3).uint(11, 9).uint(10, 5);
        });
    });
    let stderr = rejected("undefined", &undefined);
    assert!(
        stderr.contains("track 9 used before it is described"),
        "{stderr}"
    );
    assert!(
        stderr.contains("event_names iid 5 used but not defined"),
        "{stderr}"
    );
}
