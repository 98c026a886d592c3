"""Checks a native Perfetto trace from `reaper-trace report --format perfetto`
against Perfetto's own schema, and prints what it holds as JSON.

    perfetto_check.py TRACE

Parses TRACE with the official bindings of the PyPI `perfetto` package
(`perfetto_trace_pb2.Trace`, the venv `cargo xtask setup` makes), then
fails (exit 1, the problems on stderr) on:
- bytes that are not a Trace;
- any field the schema does not know, in any message: a wrong field number
  parses as an unknown field, so this is what catches one;
- the rules trace processor relies on: one trusted sequence, the first
  packet clearing the incremental state, packets using interned data
  saying so, every iid defined (in this or an earlier packet since the
  last clear) before use, every track described before use, slice begins
  and ends pairing up per track (in time order, as trace processor sorts
  them: stable, so file order breaks ties), flows with one start and at
  most one end.

On success it prints a JSON summary on stdout, for the tests to assert
exact values on:
  {"packets": N, "system": {"sysname", "release"},
   "tracks": [{"uuid", "pid", "name"}],            (name: the last given)
   "slices": [{"uuid", "pid", "name", "category", "ts", "dur", "args",
               "flow_in"}],
   "instants": [{"uuid", "pid", "name", "category", "ts", "args",
                 "flow_out", "callstack"}],
   "flows": [{"id", "from": {"pid", "name", "ts"}, "to": {...} or null}]}
with times in ns, sorted by (ts, file order); a callstack is a list of
frames, outermost first as in the trace: {"function", "file", "line",
"mapping", "rel_pc"} (null where the frame has none).
"""

import json
import sys

from google.protobuf.unknown_fields import UnknownFieldSet
from perfetto.protos.perfetto.trace.perfetto_trace_pb2 import Trace, TracePacket, TrackEvent

CLEARED = TracePacket.SEQ_INCREMENTAL_STATE_CLEARED
NEEDS = TracePacket.SEQ_NEEDS_INCREMENTAL_STATE


def unknown_fields(msg, path):
    """Every unknown field in msg and the messages it holds."""
    bad = [f"{path}: unknown field {f.field_number}" for f in UnknownFieldSet(msg)]
    for fd, val in msg.ListFields():
        if fd.message_type is None:
            continue
        # protobuf 5+ (upb) has no fd.label; is_repeated is the way.
        for i, v in enumerate(val if fd.is_repeated else [val]):
            bad += unknown_fields(v, f"{path}.{fd.name}[{i}]")
    return bad


def annotation_value(a):
    kind = a.WhichOneof("value")
    return None if kind is None else getattr(a, kind)


def main(path):
    with open(path, "rb") as f:
        data = f.read()
    try:
        trace = Trace.FromString(data)
    except Exception as e:  # DecodeError, or worse
        return [f"not a Perfetto Trace: {e}"], None
    problems = unknown_fields(trace, "trace")
    if problems:
        return problems, None

    # Interned tables of the current incremental state: field name -> {iid: entry}.
    tables = {}
    tracks = {}  # uuid -> {"uuid", "pid", "name"}
    events = []  # (ts, order, uuid, TrackEvent, packet index)
    system = {}

    def defined(table, iid, where):
        entry = tables.get(table, {}).get(iid)
        if entry is None:
            problems.append(f"{where}: {table} iid {iid} used but not defined")
        return entry

    for n, p in enumerate(trace.packet):
        where = f"packet {n}"
        if p.trusted_packet_sequence_id != 1:
            problems.append(f"{where}: trusted_packet_sequence_id {p.trusted_packet_sequence_id}, not 1")
        if n == 0 and not p.sequence_flags & CLEARED:
            problems.append(f"{where}: the first packet does not clear the incremental state")
        if p.sequence_flags & CLEARED:
            tables = {}
        if p.HasField("interned_data"):
            if not p.sequence_flags & NEEDS:
                problems.append(f"{where}: interned data without SEQ_NEEDS_INCREMENTAL_STATE")
            for fd, entries in p.interned_data.ListFields():
                table = tables.setdefault(fd.name, {})
                for e in entries:
                    if e.iid == 0:
                        problems.append(f"{where}: {fd.name} entry with iid 0")
                    elif e.iid in table and table[e.iid] != e:
                        problems.append(f"{where}: {fd.name} iid {e.iid} redefined differently")
                    table[e.iid] = e
        if p.HasField("system_info"):
            u = p.system_info.utsname
            system = {"sysname": u.sysname, "release": u.release}
        if p.HasField("track_descriptor"):
            d = p.track_descriptor
            if d.uuid == 0:
                problems.append(f"{where}: a track descriptor with uuid 0")
            if not d.HasField("process") or not d.process.HasField("pid"):
                problems.append(f"{where}: track {d.uuid} is not a process track")
            old = tracks.get(d.uuid)
            if old is not None and old["pid"] != d.process.pid:
                problems.append(f"{where}: track {d.uuid} described for pid {old['pid']}, then {d.process.pid}")
            name = d.process.process_name if d.process.HasField("process_name") else None
            if old is not None and name is None:
                name = old["name"]
            tracks[d.uuid] = {"uuid": d.uuid, "pid": d.process.pid, "name": name}
        if p.HasField("track_event"):
            e = p.track_event
            if not p.sequence_flags & NEEDS:
                problems.append(f"{where}: a track event without SEQ_NEEDS_INCREMENTAL_STATE")
            if not p.HasField("timestamp"):
                problems.append(f"{where}: a track event without a timestamp")
            if e.track_uuid not in tracks:
                problems.append(f"{where}: track {e.track_uuid} used before it is described")
            # Resolve interned references now, while this state is current.
            name = None
            if e.HasField("name_iid"):
                entry = defined("event_names", e.name_iid, where)
                name = entry.name if entry else None
            elif e.HasField("name"):
                name = e.name
            categories = [
                entry.name for iid in e.category_iids
                if (entry := defined("event_categories", iid, where)) is not None
            ] + list(e.categories)
            args = {}
            for a in e.debug_annotations:
                key = a.name
                if a.HasField("name_iid"):
                    entry = defined("debug_annotation_names", a.name_iid, where)
                    key = entry.name if entry else None
                args[key] = annotation_value(a)
            callstack = None
            if e.HasField("callstack_iid"):
                callstack = resolve_callstack(e.callstack_iid, defined, where)
            events.append({
                "ts": p.timestamp, "order": n, "uuid": e.track_uuid, "type": e.type,
                "name": name, "category": ",".join(categories) or None, "args": args,
                "flow_out": list(e.flow_ids), "flow_in": list(e.terminating_flow_ids),
                "callstack": callstack, "where": where,
            })

    # Trace processor sorts by timestamp, stably.
    events.sort(key=lambda e: (e["ts"], e["order"]))
    pid = lambda uuid: tracks.get(uuid, {}).get("pid")
    open_slices = {}  # uuid -> stack of begin events
    slices, instants, flows = [], [], {}
    for e in events:
        uuid, where = e["uuid"], e["where"]
        if e["type"] == TrackEvent.TYPE_SLICE_BEGIN:
            open_slices.setdefault(uuid, []).append(e)
        elif e["type"] == TrackEvent.TYPE_SLICE_END:
            stack = open_slices.get(uuid)
            if not stack:
                problems.append(f"{where}: SLICE_END on track {uuid} with no slice open")
                continue
            b = stack.pop()
            slices.append({
                "uuid": uuid, "pid": pid(uuid), "name": b["name"], "category": b["category"],
                "ts": b["ts"], "dur": e["ts"] - b["ts"], "args": b["args"], "flow_in": b["flow_in"],
            })
        elif e["type"] == TrackEvent.TYPE_INSTANT:
            instants.append({
                "uuid": uuid, "pid": pid(uuid), "name": e["name"], "category": e["category"],
                "ts": e["ts"], "args": e["args"], "flow_out": e["flow_out"],
                "callstack": e["callstack"],
            })
        else:
            problems.append(f"{where}: track event of type {e['type']}")
        end = {"pid": pid(uuid), "name": e["name"], "ts": e["ts"]}
        for fid in e["flow_out"]:
            if fid in flows:
                problems.append(f"{where}: flow {fid} starts twice")
            flows[fid] = {"id": fid, "from": end, "to": None}
        for fid in e["flow_in"]:
            if fid not in flows:
                problems.append(f"{where}: flow {fid} ends where none started")
            elif flows[fid]["to"] is not None:
                problems.append(f"{where}: flow {fid} ends twice")
            else:
                flows[fid]["to"] = end
    for uuid, stack in open_slices.items():
        for b in stack:
            problems.append(f"{b['where']}: slice {b['name']!r} on track {uuid} never ends")
    slices.sort(key=lambda s: (s["ts"], s["uuid"]))
    summary = {
        "packets": len(trace.packet),
        "system": system,
        "tracks": sorted(tracks.values(), key=lambda t: t["uuid"]),
        "slices": slices,
        "instants": instants,
        "flows": sorted(flows.values(), key=lambda f: f["id"]),
    }
    return problems, summary


def resolve_callstack(iid, defined, where):
    callstack = defined("callstacks", iid, where)
    if callstack is None:
        return None
    frames = []
    for frame_iid in callstack.frame_ids:
        frame = defined("frames", frame_iid, where)
        if frame is None:
            continue
        string = lambda table, i: (entry.str.decode() if (entry := defined(table, i, where)) else None)
        mapping = defined("mappings", frame.mapping_id, where)
        parts = [string("mapping_paths", i) for i in mapping.path_string_ids] if mapping else []
        frames.append({
            "function": string("function_names", frame.function_name_id) if frame.HasField("function_name_id") else None,
            "file": string("source_paths", frame.source_path_iid) if frame.HasField("source_path_iid") else None,
            "line": frame.line_number if frame.HasField("line_number") else None,
            "mapping": "".join("/" + (p or "?") for p in parts),
            "rel_pc": frame.rel_pc,
        })
    return frames


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} TRACE")
    problems, summary = main(sys.argv[1])
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)
    json.dump(summary, sys.stdout)
    print()
