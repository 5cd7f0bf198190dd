#!/usr/bin/env python3
"""Writes the conformance cases added for issue 17 (renotifyEvery, batch
renotify, flapping + history, inhibit), transcribed from Kapacitor's own
tests.

Inputs are read from Kapacitor's replay files (integrations/testdata) or
copied from the Go test's literal writes; the asserted values are the Go
test's; the other fields are derived by the model below, a line-by-line
port of alertState in Kapacitor's alert.go (addEvent, percentChange,
updateFlapping, updateExpired, triggered, Point, BufferedBatch,
Inhibitor). The model asserts every value the Go test asserts before it
writes a case. Nothing here runs or reads the agent under test.

    python3 tests/conformance/derive/issue17_cases.py /path/to/kapacitor.git
"""
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

KAPA_GIT = sys.argv[1] if len(sys.argv) > 1 else "/work/.mirror/influxdata+kapacitor/repo"
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cases")
SERVER_INFO = {
    "Hostname": "localhost",
    "ClusterID": "11111111-2222-4333-8444-555555555555",
    "ServerID": "66666666-7777-4888-9999-aaaaaaaaaaaa",
}
OK, INFO, WARNING, CRITICAL = 0, 1, 2, 3
NAMES = ["OK", "INFO", "WARNING", "CRITICAL"]
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
CLOCK_ZERO = datetime(1971, 1, 1, tzinfo=timezone.utc)
SEC = 1_000_000_000


def git_show(path):
    return subprocess.check_output(
        ["git", "--git-dir", KAPA_GIT, "show", "HEAD:" + path], text=True
    )


def rfc3339(ns):
    s, frac = divmod(ns, SEC)
    t = (EPOCH + timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        t += "." + f"{frac:09d}".rstrip("0")
    return t + "Z"


def base_alert(**kw):
    a = {
        "info": None, "warn": None, "crit": None,
        "infoReset": None, "warnReset": None, "critReset": None,
        "id": "{{ .Name }}:{{ .Group }}", "message": "{{ .ID }} is {{ .Level }}",
        "details": "{{ json . }}",
        "stateChangesOnly": False, "stateChangesOnlyDuration": None,
        "flapping": None, "history": None, "noRecoveries": False, "all": False,
        "idTag": None, "idField": None, "levelTag": None, "levelField": None,
        "messageField": None, "durationField": None,
        "category": None, "inhibit": [], "topic": None,
        "handlers": ["post"], "defaults_used": [],
    }
    a.update(kw)
    return a


# ---------------------------------------------------------------- alert.go model
class State:
    def __init__(self, history, flap, d):
        self.history = [OK] * history
        self.idx = 0
        self.flap = flap  # (low, high) or None
        self.flapping = False
        self.d = d  # stateChangesOnly duration in ns, 0 when none
        self.last = None  # zero time.Time
        self.first = None
        self.changed = False
        self.expired = False
        self.inhibitors = []

    def percent_change(self):
        l = len(self.history)
        changes = 0.0
        weight = 1.2 / 1.5
        step = (1.2 - weight) / float(l - 1)
        for i in range(l - 1):
            c = (i + self.idx) % l
            p = c - 1
            if p < 0:
                p = l - 1
            if self.history[c] != self.history[p]:
                changes += weight
            weight += step
        return changes / float(l - 1)

    def add_event(self, t, level):
        self.changed = self.history[self.idx] != level
        self.idx = (self.idx + 1) % len(self.history)
        self.history[self.idx] = level
        self.pct = None
        if self.flap:
            self.pct = self.percent_change()
            if self.flapping and self.pct < self.flap[0]:
                self.flapping = False
            elif not self.flapping and self.pct > self.flap[1]:
                self.flapping = True
        # t.Sub(zero time) overflows to the max duration: always >= d.
        since = float("inf") if self.last is None else t - self.last
        self.expired = (not self.changed) and self.d != 0 and since >= self.d

    def triggered(self, t):
        self.last = t
        p = self.idx - 1
        if p == -1:
            p = len(self.history) - 1
        if self.history[p] == OK:
            self.first = t
        on = self.history[self.idx] != OK
        for inh in self.inhibitors:
            inh["active"] = on

    def duration(self):
        return self.last - self.first


def level_of(fields, levels):
    """determineLevel without reset expressions: the highest true level."""
    for lvl in (CRITICAL, WARNING, INFO):
        f = levels.get(lvl)
        if f is not None and f(fields):
            return lvl
    return OK


def go_json_float(f):
    r = repr(float(f))
    return r[:-2] if r.endswith(".0") else r


def go_json(v):
    """encoding/json with the HTML-safe encoder, for the default details."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return go_json_float(v)
    if isinstance(v, str):
        s = json.dumps(v, ensure_ascii=False)
        return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    if isinstance(v, list):
        return "[" + ",".join(go_json(x) for x in v) + "]"
    if isinstance(v, dict):  # ordered as given (structs) or sorted (maps)
        return "{" + ",".join(go_json(k) + ":" + go_json(x) for k, x in v.items()) + "}"
    raise TypeError(v)


def html_escape(s):
    out = []
    for ch in s:
        out.append({'"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;",
                    ">": "&gt;", "+": "&#43;", "\0": "\ufffd"}.get(ch, ch))
    return "".join(out)


def default_details(name, task, group, tags, eid, fields, level, t, dur, msg):
    data = {
        "Name": name, "TaskName": task, "Group": group or "nil",
        "Tags": dict(sorted(tags.items())), "ServerInfo": SERVER_INFO,
        "ID": eid, "Fields": dict(sorted(fields.items())), "Level": NAMES[level],
        "Time": rfc3339(t), "Duration": dur, "Message": msg,
    }
    return html_escape(go_json(data) + "\n")


def stream_series(p):
    row = {"name": p["name"]}
    if p["tags"]:
        row["tags"] = dict(sorted(p["tags"].items()))
    cols = sorted(p["fields"])
    row["columns"] = ["time"] + cols
    row["values"] = [[p["time"]] + [p["fields"][c] for c in cols]]
    return {"series": [row]}


def batch_series(b):
    row = {"name": b["name"], "tags": b["tags"]}
    cols = sorted(b["points"][0]["fields"])
    row["columns"] = ["time"] + cols
    row["values"] = [[p["time"]] + [p["fields"][c] for c in cols] for p in b["points"]]
    return {"series": [row]}


def event(eid, msg, details, t, dur, level, data, prev, task=None):
    e = {}
    if task is not None:
        e["task"] = task
    e.update({
        "id": eid, "message": msg, "details": details, "time": rfc3339(t),
        "duration": dur, "level": NAMES[level], "data": data,
        "previousLevel": NAMES[prev], "recoverable": True,
    })
    return e


# ---------------------------------------------------------------- replay files
def srpl_points(name):
    """integrations/testdata/<name>.srpl: database, rp, line; precision s;
    shifted so the first point lands on 1971-01-01T00:00:00Z."""
    lines = git_show(f"integrations/testdata/{name}.srpl").splitlines()
    pts = []
    shift = None
    for i in range(0, len(lines) - 2, 3):
        db, rp, lp = lines[i], lines[i + 1], lines[i + 2]
        head, fields, ts = lp.split(" ")
        meas, *tagkv = head.split(",")
        tags = dict(kv.split("=", 1) for kv in tagkv)
        fs = {}
        for kv in fields.split(","):
            k, v = kv.split("=", 1)
            fs[k] = float(v)  # line protocol number without i: float64
        sec = int(ts)
        if shift is None:
            shift = (CLOCK_ZERO - EPOCH).total_seconds() - sec
        t = int(sec + shift) * SEC
        pts.append({"time": rfc3339(t), "_ns": t, "name": meas, "database": db,
                    "retentionPolicy": rp, "group": "", "dimensions": [],
                    "tags": tags, "fields": fs})
    return pts


def brpl_batches(name):
    out = []
    shift = None
    for line in git_show(f"integrations/testdata/{name}.brpl").splitlines():
        if not line.strip():
            continue
        b = json.loads(line)
        pts = []
        for p in b["points"]:
            t = int(datetime.strptime(p["time"], "%Y-%m-%dT%H:%M:%SZ")
                    .replace(tzinfo=timezone.utc).timestamp()) * SEC
            if shift is None:
                shift = int((CLOCK_ZERO - EPOCH).total_seconds()) * SEC - t
            t += shift
            pts.append({"time": rfc3339(t), "_ns": t, "fields": p["fields"],
                        "tags": dict(b["tags"])})
        tags = dict(sorted(b["tags"].items()))
        out.append({"name": b["name"],
                    "group": ",".join(f"{k}={v}" for k, v in tags.items()),
                    "tags": tags, "tmax": pts[-1]["time"], "_tmax": pts[-1]["_ns"],
                    "points": pts})
    return out


def strip_private(x):
    if isinstance(x, dict):
        return {k: strip_private(v) for k, v in x.items() if not k.startswith("_")}
    if isinstance(x, list):
        return [strip_private(v) for v in x]
    return x


def write(case):
    path = os.path.join(OUT, case["name"] + ".json")
    with open(path, "w") as f:
        json.dump(strip_private(case), f, indent=2)
        f.write("\n")
    print("wrote", path, len(case["expected_events"]), "events")


# ---------------------------------------------------------------- stream model run
def run_stream(pts, task, levels, history=21, flap=None, d=0, details=None):
    st = State(history, flap, d)
    events, trace, prev_by_id = [], [], {}
    for p in pts:
        t = p["_ns"]
        l = level_of(p["fields"], levels)
        st.add_event(t, l)
        row = {"time": p["time"], "level": NAMES[l], "changed": st.changed}
        if flap:
            row["percentChange"] = st.pct
            row["flapping"] = st.flapping
        if d:
            row["expired"] = st.expired
        sent = False
        if not ((flap and st.flapping) or (d and not st.changed and not st.expired)):
            if l != OK or st.changed:
                st.triggered(t)
                dur = st.duration()
                eid = p["name"] + ":nil"
                msg = f"{eid} is {NAMES[l]}"
                det = details if details is not None else default_details(
                    p["name"], task, "", p["tags"], eid, p["fields"], l, t, dur, msg)
                events.append(event(eid, msg, det, t, dur, l, stream_series(p),
                                    prev_by_id.get(eid, OK)))
                prev_by_id[eid] = l
                sent = True
        row["sent"] = sent
        trace.append(row)
    return events, trace


def asserted(e, fields):
    e["_asserted"] = fields
    return e


# ------------------------------------------------------------------------ cases
def stream_state_changes_only_expired():
    name = "TestStream_AlertStateChangesOnlyExpired"
    pts = srpl_points(name)
    events, trace = run_stream(pts, name, {CRITICAL: lambda f: f["value"] < 97},
                               d=2 * SEC, details="")
    # The Go test's assertions (ad.Data zeroed), request rc = 1..6.
    assert len(events) == 6
    for i, e in enumerate(events):
        rc = i + 1
        if rc < 6:
            assert e["time"] == rfc3339(CLOCK_ZERO_NS + (rc * 2 - 1) * SEC)
            assert e["duration"] == (rc - 1) * 2 * SEC
            assert e["level"] == "CRITICAL" and e["message"] == "cpu:nil is CRITICAL"
            assert e["previousLevel"] == ("OK" if rc == 1 else "CRITICAL")
        else:
            assert e["time"] == rfc3339(CLOCK_ZERO_NS + 10 * SEC)
            assert e["duration"] == 9 * SEC
            assert e["level"] == "OK" and e["previousLevel"] == "CRITICAL"
        assert e["id"] == "cpu:nil" and e["recoverable"] is True
        asserted(e, ["id", "message", "details", "time", "duration", "level",
                     "previousLevel", "recoverable"])
    write({
        "name": "stream_state_changes_only_expired",
        "source": "integrations/streamer_test.go:TestStream_AlertStateChangesOnlyExpired",
        "edge": "stream",
        "task": name,
        "tickscript": "stream\n\t|from()\n\t\t.measurement('cpu')\n\t|alert()\n\t\t.crit(lambda: \"value\" < 97)\n\t\t.details('')\n\t\t.stateChangesOnly(2s)\n\t\t.post('http://alert-endpoint.example/')",
        "alert": base_alert(crit='"value" < 97', details="", stateChangesOnly=True,
                            stateChangesOnlyDuration="2s", defaults_used=["id", "message"]),
        "input": pts,
        "derived_input_note": "integrations/testdata/TestStream_AlertStateChangesOnlyExpired.srpl, precision s, shifted so its first point is 1971-01-01T00:00:00Z (README section 2).",
        "expected_events": events,
        "expected_event_count": 6,
        "events_order": "in emission order",
        "assertion": "the test asserts 6 POSTs and, per request, id, message, time, duration, level, previousLevel, recoverable (details '' by the script); data is zeroed by the test and derived here",
        "derived_trace": trace,
        "notes": "stateChangesOnly(2s) = the UDF option renotifyEvery(2s): an unchanged CRITICAL is re-sent once 2s have passed since the last sent event (t=3,5,7,9s), not at t=2,4,6,8s.",
    })


def batch_state_changes_only_expired():
    name = "TestBatch_AlertStateChangesOnly"  # the data set the Go test replays
    batches = brpl_batches(name + ".0")
    crit = lambda f: f["mean"] > 90
    st = State(21, None, 15 * SEC)
    events, trace, prev = [], [], OK
    for b in batches:
        cur_levels = [level_of(p["fields"], {CRITICAL: crit}) for p in b["points"]]
        hi, hp = OK, None
        for lv, p in zip(cur_levels, b["points"]):
            if lv > hi or hp is None:
                hi, hp = lv, p
        l = hi
        t = hp["_ns"] if l != OK else b["_tmax"]
        st.add_event(t, l)
        send = (st.changed and l == OK) or (l != OK and not (not st.changed and not st.expired))
        trace.append({"tmax": b["tmax"], "group": b["group"], "level": NAMES[l],
                      "changed": st.changed, "expired": st.expired, "sent": send})
        if send:
            st.triggered(t)
            eid = f"{b['name']}:{b['group']}"
            events.append(event(eid, f"{eid} is {NAMES[l]}", "", t, st.duration(), l,
                                batch_series(b), prev))
            prev = l
    exp = [  # the Go test's three requests
        ("CRITICAL", 0, 0, "OK"), ("CRITICAL", 20, 20, "CRITICAL"), ("OK", 38, 38, "CRITICAL")]
    assert len(events) == 3
    for e, (lvl, ts, dur, pl) in zip(events, exp):
        assert e["level"] == lvl and e["time"] == rfc3339(CLOCK_ZERO_NS + ts * SEC)
        assert e["duration"] == dur * SEC and e["previousLevel"] == pl
        assert e["id"] == "cpu_usage_idle:cpu=cpu-total"
        assert e["message"] == f"cpu_usage_idle:cpu=cpu-total is {lvl}"
        asserted(e, ["id", "message", "details", "time", "duration", "level",
                     "previousLevel", "recoverable"])
    write({
        "name": "batch_state_changes_only_expired",
        "source": "integrations/batcher_test.go:TestBatch_AlertStateChangesOnlyExpired",
        "edge": "batch",
        "task": name,
        "tickscript": "batch\n\t|query('''\n\t\tSELECT mean(\"value\")\n\t\tFROM \"telegraf\".\"default\".cpu_usage_idle\n\t\tWHERE \"host\" = 'serverA' AND \"cpu\" != 'cpu-total'\n''')\n\t\t.period(10s)\n\t\t.every(10s)\n\t\t.groupBy(time(2s), 'cpu')\n\t|alert()\n\t\t.crit(lambda:\"mean\" > 90)\n\t\t.stateChangesOnly(15s)\n\t\t.levelField('level')\n\t\t.details('')\n\t\t.post('http://alert-endpoint.example/')",
        "alert": base_alert(crit='"mean" > 90', details="", stateChangesOnly=True,
                            stateChangesOnlyDuration="15s", levelField="level",
                            defaults_used=["id", "message"]),
        "input": batches,
        "derived_input_note": "integrations/testdata/TestBatch_AlertStateChangesOnly.0.brpl (the Go test replays the TestBatch_AlertStateChangesOnly data set): one batch per line, shifted so the first point is 1971-01-01T00:00:00Z, tmax = the batch's last point, group = all batch tags.",
        "expected_events": events,
        "expected_event_count": 3,
        "events_order": "in emission order",
        "assertion": "the test asserts 3 POSTs and, per request, id, message, time, duration, level, previousLevel, recoverable; data is zeroed by the test and derived here (the whole batch as one series)",
        "derived_trace": trace,
        "notes": "Batch renotify: the batch at tmax 18s is CRITICAL at 10s, 10s after the last sent event: not expired, dropped; the batch at tmax 28s is CRITICAL at 20s, 20s >= 15s after it: expired, re-sent with duration 20s. levelField only augments the emitted batch, not the event's data.",
    })


def stream_flapping_history():
    name = "TestStream_AlertFlapping"
    pts = srpl_points(name)
    levels = {INFO: lambda f: f["value"] < 95, WARNING: lambda f: f["value"] < 94,
              CRITICAL: lambda f: f["value"] < 93}
    events, trace = run_stream(pts, name, levels, history=21, flap=(0.25, 0.50))
    assert len(events) == 9, len(events)  # the Go test's only assertion
    for e in events:
        asserted(e, [])
    write({
        "name": "stream_flapping_history",
        "source": "integrations/streamer_test.go:TestStream_AlertFlapping",
        "edge": "stream",
        "task": name,
        "tickscript": "stream\n\t|from()\n\t\t.measurement('cpu')\n\t\t.where(lambda: \"host\" == 'serverA')\n\t|alert()\n\t\t.info(lambda: \"value\" < 95)\n\t\t.warn(lambda: \"value\" < 94)\n\t\t.crit(lambda: \"value\" < 93)\n\t\t.flapping(0.25, 0.50)\n\t\t.history(21)\n\t\t.post('http://alert-endpoint.example/')",
        "alert": base_alert(info='"value" < 95', warn='"value" < 94', crit='"value" < 93',
                            flapping=[0.25, 0.5], history=21,
                            defaults_used=["id", "message", "details"]),
        "server_info": SERVER_INFO,
        "input": pts,
        "derived_input_note": "integrations/testdata/TestStream_AlertFlapping.srpl, precision s, shifted so its first point is 1971-01-01T00:00:00Z; every point has host=serverA, so the where() passes all.",
        "expected_events": events,
        "expected_event_count": 9,
        "events_order": "in emission order",
        "assertion": "the test asserts 9 POSTs (\"Flapping detection should drop the last alerts\"); every event field is derived from alert.go",
        "derived_trace": trace,
        "notes": "percentChange (history(21): 20 weighted pairs) first exceeds 0.50 at t=10s (0.525), so the points at 10s and 11s are dropped (flapping suppresses OK too on streams). history(21) is passed explicitly, as the test does; Kapacitor has no test with another history length.",
    })


def server_inhibition():
    """server/server_test.go:TestServer_Alert_Inhibition: four stream tasks
    on one topic; writes with precision s and no shift."""
    writes = [
        [("cpu", {"region": "west", "host": "A", "cpu": "0"}, False),
         ("cpu", {"region": "west", "host": "A", "cpu": "1"}, False),
         ("cpu", {"region": "west", "host": "B", "cpu": "0"}, False),
         ("cpu", {"region": "west", "host": "B", "cpu": "1"}, False),
         ("cpu", {"region": "east", "host": "A", "cpu": "0"}, False),
         ("cpu", {"region": "east", "host": "A", "cpu": "1"}, False),
         ("cpu", {"region": "east", "host": "B", "cpu": "0"}, False),
         ("cpu", {"region": "east", "host": "B", "cpu": "1"}, False),
         ("mem", {"region": "west", "host": "A"}, False),
         ("mem", {"region": "west", "host": "B"}, False),
         ("mem", {"region": "east", "host": "A"}, False),
         ("mem", {"region": "east", "host": "B"}, False),
         ("host", {"region": "west", "host": "A"}, False),
         ("host", {"region": "west", "host": "B"}, False),
         ("host", {"region": "east", "host": "A"}, False),
         ("host", {"region": "east", "host": "B"}, False),
         ("region", {"region": "west"}, False),
         ("region", {"region": "east"}, False)],
        [("cpu", {"region": "west", "host": "B", "cpu": "0"}, True),
         ("cpu", {"region": "east", "host": "A", "cpu": "1"}, True),
         ("mem", {"region": "west", "host": "B"}, True),
         ("mem", {"region": "east", "host": "A"}, True)],
        [("host", {"region": "west", "host": "B"}, True),
         ("host", {"region": "east", "host": "B"}, True)],
        [("cpu", {"region": "west", "host": "B", "cpu": "0"}, True),
         ("cpu", {"region": "east", "host": "A", "cpu": "1"}, True),
         ("mem", {"region": "west", "host": "B"}, True),
         ("mem", {"region": "east", "host": "A"}, True)],
        [("host", {"region": "west", "host": "B"}, False),
         ("host", {"region": "east", "host": "B"}, False)],
        [("cpu", {"region": "west", "host": "B", "cpu": "0"}, True),
         ("cpu", {"region": "east", "host": "A", "cpu": "1"}, True),
         ("mem", {"region": "west", "host": "B"}, True),
         ("mem", {"region": "east", "host": "A"}, True)],
        [("region", {"region": "east"}, True)],
        [("cpu", {"region": "west", "host": "B", "cpu": "0"}, True),
         ("cpu", {"region": "east", "host": "A", "cpu": "1"}, True),
         ("mem", {"region": "west", "host": "B"}, True),
         ("mem", {"region": "east", "host": "A"}, True),
         ("host", {"region": "west", "host": "A"}, True),
         ("host", {"region": "east", "host": "B"}, True)],
        [("region", {"region": "east"}, False)],
        [("cpu", {"region": "west", "host": "B", "cpu": "0"}, True),
         ("cpu", {"region": "east", "host": "A", "cpu": "1"}, True),
         ("mem", {"region": "west", "host": "B"}, True),
         ("mem", {"region": "east", "host": "A"}, True),
         ("host", {"region": "west", "host": "A"}, True),
         ("host", {"region": "east", "host": "B"}, True)],
    ]
    cats = {"cpu": "system", "mem": "system", "host": "host_alert", "region": "region_alert"}
    inhibit = {"cpu": [], "mem": [],
               "host": [{"category": "system", "equalTags": ["region", "host"]}],
               "region": [{"category": "host_alert", "equalTags": ["region"]},
                          {"category": "system", "equalTags": ["region"]}]}
    msgs = {"cpu": "cpu", "mem": "mem", "host": "host", "region": "region"}
    states, inhibitors, topic = {}, [], {}
    inputs, events = [], []
    for step, w in enumerate(writes):
        for meas, tags, v in w:
            t = step * SEC
            dims = sorted(tags)
            group = ",".join(f"{k}={tags[k]}" for k in dims)
            p = {"step": step, "task": meas, "time": rfc3339(t), "name": meas,
                 "database": "mydb", "retentionPolicy": "myrp", "group": group,
                 "dimensions": dims, "tags": tags, "fields": {"v": v}}
            inputs.append(p)
            key = (meas, group)
            if key not in states:
                st = State(21, None, 0)
                for inh in inhibit[meas]:
                    rec = {"category": inh["category"], "active": False,
                           "tags": {k: tags.get(k, "") for k in inh["equalTags"]}}
                    st.inhibitors.append(rec)
                    inhibitors.append(rec)
                states[key] = st
            st = states[key]
            l = CRITICAL if v else OK
            st.add_event(t, l)
            if l != OK or st.changed:
                st.triggered(t)
                eid = f"{meas}:{group}"
                inhibited = any(
                    i["active"] and i["category"] == cats[meas]
                    and all(tags.get(k, "") == val for k, val in i["tags"].items())
                    for i in inhibitors)
                if not inhibited:
                    events.append(event(eid, msgs[meas], "", t, st.duration(), l,
                                        stream_series(p), topic.get(eid, OK), task=meas))
                    topic[eid] = l
    # The Go test's want list, sorted by (time, id) as the test sorts.
    want = [
        (1, "cpu:cpu=0,host=B,region=west", "CRITICAL", "OK", 0),
        (1, "cpu:cpu=1,host=A,region=east", "CRITICAL", "OK", 0),
        (1, "mem:host=A,region=east", "CRITICAL", "OK", 0),
        (1, "mem:host=B,region=west", "CRITICAL", "OK", 0),
        (2, "host:host=B,region=east", "CRITICAL", "OK", 0),
        (2, "host:host=B,region=west", "CRITICAL", "OK", 0),
        (3, "cpu:cpu=1,host=A,region=east", "CRITICAL", "CRITICAL", 2),
        (3, "mem:host=A,region=east", "CRITICAL", "CRITICAL", 2),
        (4, "host:host=B,region=east", "OK", "CRITICAL", 2),
        (4, "host:host=B,region=west", "OK", "CRITICAL", 2),
        (5, "cpu:cpu=0,host=B,region=west", "CRITICAL", "CRITICAL", 4),
        (5, "cpu:cpu=1,host=A,region=east", "CRITICAL", "CRITICAL", 4),
        (5, "mem:host=A,region=east", "CRITICAL", "CRITICAL", 4),
        (5, "mem:host=B,region=west", "CRITICAL", "CRITICAL", 4),
        (6, "region:region=east", "CRITICAL", "OK", 0),
        (7, "cpu:cpu=0,host=B,region=west", "CRITICAL", "CRITICAL", 6),
        (7, "host:host=A,region=west", "CRITICAL", "OK", 0),
        (7, "mem:host=B,region=west", "CRITICAL", "CRITICAL", 6),
        (8, "region:region=east", "OK", "CRITICAL", 2),
        (9, "cpu:cpu=0,host=B,region=west", "CRITICAL", "CRITICAL", 8),
        (9, "cpu:cpu=1,host=A,region=east", "CRITICAL", "CRITICAL", 8),
        (9, "host:host=A,region=west", "CRITICAL", "CRITICAL", 2),
        (9, "host:host=B,region=east", "CRITICAL", "OK", 2),
        (9, "mem:host=A,region=east", "CRITICAL", "CRITICAL", 8),
        (9, "mem:host=B,region=west", "CRITICAL", "CRITICAL", 8),
    ]
    got = sorted(((parse_s(e["time"]), e["id"], e["level"], e["previousLevel"],
                   e["duration"] // SEC) for e in events))
    assert got == want, (got, want)
    for e in events:
        assert e["message"] == e["id"].split(":")[0]
        asserted(e, ["id", "message", "details", "time", "duration", "level",
                     "previousLevel", "recoverable"])
    tasks = []
    for meas in ["cpu", "mem", "host", "region"]:
        inh = "".join(f"\n\t\t.inhibit('{i['category']}', " + ", ".join(f"'{t}'" for t in i["equalTags"]) + ")"
                      for i in inhibit[meas])
        tick = (f"stream\n\t|from()\n\t\t.measurement('{meas}')\n\t\t.groupBy(*)\n\t|alert()\n"
                f"\t\t.category('{cats[meas]}')\n\t\t.topic('inhibition')\n\t\t.message('{meas}')\n"
                f"\t\t.details('')\n\t\t.crit(lambda: \"v\"){inh}")
        tasks.append({"task": meas, "tickscript": tick, "alert": base_alert(
            crit='"v"', message=meas, details="", category=cats[meas],
            inhibit=inhibit[meas], topic="inhibition", handlers=["tcp"],
            defaults_used=["id"])})
    write({
        "name": "stream_inhibit_multi_task",
        "source": "server/server_test.go:TestServer_Alert_Inhibition",
        "edge": "stream",
        "tasks": tasks,
        "input": inputs,
        "derived_input_note": "The test writes ten line-protocol bodies (#0..#9) with precision s through the HTTP write path (no shift: step n is 1970-01-01T00:00:0nZ), each point reaching the task whose from() measurement matches; groupBy(*) makes every tag a dimension (sorted). v=true/false are bool fields. Within one write no point depends on another task's point of that write, so the order across tasks inside a step is free.",
        "expected_events": events,
        "expected_event_count": len(want),
        "events_order": "sorted by (time, id)",
        "assertion": "the test sorts the TCP handler's events by (time, id) and compares id, message, details, time, duration, level, previousLevel, recoverable of all 25; data is zeroed by the test and derived here",
        "notes": "Inhibited events are dropped before the topic, so previousLevel skips them: host:host=B,region=east fires at 7s while region east is CRITICAL (inhibited) and is sent at 9s with previousLevel OK and duration 2s (its alert started at 7s).",
    })


def parse_s(t):
    return int(datetime.strptime(t, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
               .timestamp())


CLOCK_ZERO_NS = int((CLOCK_ZERO - EPOCH).total_seconds()) * SEC

if __name__ == "__main__":
    stream_state_changes_only_expired()
    batch_state_changes_only_expired()
    stream_flapping_history()
    server_inhibition()
