#!/usr/bin/python3
"""The pymongo side of mongo_helper's benchmark (bench/bench.c).

Runs the same tasks as bench.c on the same server and the same data: the
documents come from the same generators (splitmix64, same fixed seed, same
shapes, byte-for-byte the same BSON -- bench.c compares a fingerprint), and
every operation is written the way a pymongo user would write it (one
MongoClient, find_one, insert_one, insert_many, aggregate, GridFSBucket,
the seed's cache_user_data / log_user_event patterns).

Two ways to run it, both with Debian's /usr/bin/python3 and python3-pymongo:

  bench_pymongo.py --serve --uri URI
      driven by bench.c over stdin/stdout so its runs interleave with the C
      runs: one request line in ("info", "config ...", "run TASK OPS PARAM
      WARMUP", "quit"), one JSON object per line out.

  bench_pymongo.py --uri URI [--quick] [--tasks a,b] [--reps N]
      standalone: seeds its own data, runs every task (warm-up + N
      repetitions) and prints one JSON object per task.

Measured per run: CPU of this process (resource.getrusage RUSAGE_SELF, user
+ sys), wall time (time.perf_counter), peak RSS during the run (VmHWM after
resetting it through /proc/self/clear_refs), and for streaming the RSS
growth read from /proc/self/statm.
"""
import argparse
import datetime
import hashlib
import json
import os
import platform
import resource
import statistics
import sys
import threading
import time

import bson
import gridfs
import pymongo

SEED = 0x6D6F6E676F5F6865
M64 = (1 << 64) - 1
TYPES = ["login", "view", "click", "purchase", "logout"]
LARGE_FIELDS = 3000
STREAM_CHUNK = 1000
SESSION_IDLE = datetime.timedelta(days=14)
SESSION_TOUCH = datetime.timedelta(seconds=60)
CACHE_TTL = datetime.timedelta(seconds=3600)
PAGE_KB = os.sysconf("SC_PAGESIZE") // 1024


# ---- Deterministic data (mirrors bench.c exactly) -------------------------

class Rng:
    """splitmix64 seeded per (kind, index), as rng_init()/rng_next()."""
    __slots__ = ("s",)

    def __init__(self, kind, i):
        self.s = (SEED ^ ((kind * 0x9E3779B97F4A7C15) & M64)
                  ^ ((i * 0xD1B54A32D192ED03) & M64)) & M64

    def next(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & M64
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)

    def letters(self, n):
        out = bytearray()
        while len(out) < n:
            for b in self.next().to_bytes(8, "little"):
                if len(out) == n:
                    break
                out.append(97 + b % 26)
        return out.decode("ascii")


def gen_flat(i, with_id):
    r = Rng(1, i)
    d = {}
    if with_id:
        d["_id"] = i
    d["category"] = r.next() % 20
    d["value"] = r.next() % 1000
    for k in range(18):
        key = "f%02d" % k
        if k % 3 == 0:
            n = 8 + r.next() % 17
            d[key] = r.letters(n)
        elif k % 3 == 1:
            d[key] = r.next() % 2147483647
        else:
            d[key] = (r.next() % 1000000000) / 1000.0
    return d


def gen_nested(i, with_id):
    r = Rng(2, i)
    d = {}
    if with_id:
        d["_id"] = i
    user = {"id": r.next() % 1000000}
    n = 6 + r.next() % 10
    user["name"] = r.letters(n)
    user["followers"] = r.next() % 100000
    loc = {}
    n = 5 + r.next() % 10
    loc["city"] = r.letters(n)
    g0 = (r.next() % 360000) / 1000.0
    g1 = (r.next() % 180000) / 1000.0
    loc["geo"] = [g0, g1]
    user["location"] = loc
    d["user"] = user
    n = 60 + r.next() % 80
    d["text"] = r.letters(n)
    ntags = 2 + r.next() % 4
    tags = []
    for _ in range(ntags):
        n = 3 + r.next() % 8
        tags.append(r.letters(n))
    d["tags"] = tags
    urls = []
    for _ in range(2):
        u = {"url": r.letters(20)}
        a = r.next() % 100
        b = r.next() % 100
        u["idx"] = [a, b]
        urls.append(u)
    d["entities"] = {"urls": urls}
    d["retweets"] = r.next() % 5000
    d["lang"] = r.letters(2)
    return d


def gen_large(i):
    r = Rng(3, i)
    d = {}
    for k in range(LARGE_FIELDS):
        n = 400 + r.next() % 200
        d["k%04d" % k] = r.letters(n)
    return d


def gen_meta(i):
    r = Rng(5, i)
    uid = "u%d" % (r.next() % 10000)
    etype = TYPES[r.next() % 5]
    path = "/" + r.letters(10)
    return uid, etype, {"path": path, "ms": r.next() % 500}


def gen_blob(length):
    r = Rng(4, 0)
    block = 1 << 20
    head = bytearray()
    while len(head) < min(block, length):
        head += r.next().to_bytes(8, "little")
    head = bytes(head[:min(block, length)])
    if length <= block:
        return head
    return (head * (length // block + 1))[:length]


def session_key(i):
    # 43 base64url characters, as mongo_helper's session ids
    return hashlib.sha256(("sess%039d" % i).encode()).hexdigest()


def fingerprint():
    h = 0xCBF29CE484222325
    docs = [gen_flat(i, True) for i in range(100)]
    docs += [gen_nested(i, True) for i in range(100)]
    docs.append(gen_large(0))
    for i in range(100):
        uid, etype, meta = gen_meta(i)
        docs.append({"user_id": uid, "event_type": etype, "metadata": meta})
    for d in docs:
        for byte in bson.encode(d):
            h = ((h ^ byte) * 0x100000001B3) & M64
    return "%016x" % h


# ---- Memory ------------------------------------------------------------------

def rss_kb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE_KB


def hwm_reset():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def hwm_kb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# ---- The benchmark -------------------------------------------------------

class Bench:
    def __init__(self, uri):
        self.client = pymongo.MongoClient(uri, appname="mh-bench-pymongo")
        self.db = self.client.get_default_database()
        self.flat_coll_n = 10000
        self.nested_coll_n = 10000
        self.sessions_n = 1000
        self.cache_n = 1000
        self.flat_n = 0
        self.meta_n = 1000
        self.flat = []
        self.large = None
        self.large_bad = None
        self.metas = []
        self.blob = b""
        self.stream_docs = 0

    def configure(self, flat_coll_n, nested_coll_n, sessions_n, cache_n,
                  flat_n, meta_n, quick, stream_docs):
        self.flat_coll_n = flat_coll_n
        self.nested_coll_n = nested_coll_n
        self.sessions_n = sessions_n
        self.cache_n = cache_n
        self.flat_n = flat_n
        self.meta_n = meta_n
        self.stream_docs = stream_docs
        self.flat = [gen_flat(i, False) for i in range(flat_n)]
        self.large = gen_large(0)
        last = "k%04d" % (LARGE_FIELDS - 1)
        self.large_bad = dict(self.large)
        self.large_bad[last] = self.large[last][:-1] + "\udcff"
        self.metas = [gen_meta(i) for i in range(meta_n)]
        self.blob = gen_blob((5 if quick else 50) << 20)

    def name(self, what):
        return "bench_%s_pymongo" % what

    def strip_ids(self, docs):
        for d in docs:
            d.pop("_id", None)

    # Each task: prep (untimed) returns the timed callable and an optional
    # untimed check; the callable returns extra result fields or None.

    def t_run_command(self, ops, param):
        db = self.db

        def run():
            for _ in range(ops):
                db.command("ping")
        return run, None

    def t_find_one(self, ops, param):
        coll = self.db.bench_flat
        n = self.flat_coll_n

        def run():
            for j in range(ops):
                d = coll.find_one({"_id": j % n})
                if d is None or d["_id"] != j % n:
                    raise RuntimeError("find one: no document with _id %d" % (j % n))
        return run, None

    def _insert_one(self, what, docs):
        coll = self.db[self.name(what)]
        coll.drop()

        def run():
            for d in docs:
                coll.insert_one(d)
        return run, lambda: self.strip_ids(docs)

    def t_insert_one_small(self, ops, param):
        return self._insert_one("insert_small",
                                [self.flat[j % self.flat_n] for j in range(ops)])

    def t_insert_one_large(self, ops, param):
        # insert_one adds _id to the dict it is given: one shallow copy per
        # insert, made before the clock starts.
        return self._insert_one("insert_large", [dict(self.large) for _ in range(ops)])

    def t_insert_one_large_invalid(self, ops, param):
        # A Python str cannot hold invalid UTF-8 bytes; the nearest is a lone
        # surrogate at the same place (the end of the last string), which
        # pymongo's encoder refuses before sending (UnicodeEncodeError).
        coll = self.db[self.name("insert_invalid")]
        coll.drop()
        docs = [dict(self.large_bad) for _ in range(ops)]

        def run():
            for d in docs:
                try:
                    coll.insert_one(d)
                except (UnicodeEncodeError, bson.errors.InvalidStringData):
                    continue
                raise RuntimeError("insert one accepted a string with a lone surrogate")

        def after():
            n = coll.count_documents({})
            if n:
                raise RuntimeError("%d documents stored, expected none" % n)
        return run, after

    def t_find_many(self, ops, param):
        coll = self.db.bench_nested

        def run():
            n = 0
            for _ in coll.find({}):
                n += 1
            if n != ops:
                raise RuntimeError("find many: %d documents, expected %d" % (n, ops))
        return run, None

    def _insert_many(self, what, docs):
        coll = self.db[self.name(what)]
        coll.drop()

        def run():
            res = coll.insert_many(docs)
            if len(res.inserted_ids) != len(docs):
                raise RuntimeError("insert many: %d inserted" % len(res.inserted_ids))
        return run, lambda: self.strip_ids(docs)

    def t_insert_many_small(self, ops, param):
        return self._insert_many("many_small",
                                 [self.flat[j % self.flat_n] for j in range(ops)])

    def t_insert_many_large(self, ops, param):
        return self._insert_many("many_large", [dict(self.large) for _ in range(ops)])

    def t_bulk_insert(self, ops, param):
        coll = self.db[self.name("bulk")]
        coll.drop()
        docs = [self.flat[j % self.flat_n] for j in range(ops)]

        def run():
            inserted = 0
            for i in range(0, ops, param):
                res = coll.insert_many(docs[i:i + param], ordered=False)
                inserted += len(res.inserted_ids)
            if inserted != ops:
                raise RuntimeError("bulk insert: %d inserted" % inserted)
        return run, lambda: self.strip_ids(docs)

    def t_aggregate(self, ops, param):
        coll = self.db.bench_flat
        pipeline = [{"$match": {"category": {"$lt": 10}}},
                    {"$group": {"_id": "$category", "total": {"$sum": "$value"},
                                "n": {"$sum": 1}}}]

        def run():
            for _ in range(ops):
                groups = list(coll.aggregate(pipeline))
                if len(groups) != 10:
                    raise RuntimeError("aggregate: %d groups" % len(groups))
        return run, None

    def t_stream(self, ops, param):
        coll = self.db.bench_stream

        def run():
            before = rss_kb()
            n = 0
            chunk = []
            # limit only for the warm-up, which reads a part
            for d in coll.find({}, batch_size=param,
                               limit=ops if ops < self.stream_docs else 0):
                chunk.append(d)
                if len(chunk) == param:
                    n += len(chunk)
                    chunk.clear()
            n += len(chunk)
            if n != ops:
                raise RuntimeError("stream: %d documents, expected %d" % (n, ops))
            return {"rss_growth_kb": rss_kb() - before,
                    "peak_growth_kb": hwm_kb() - before}
        return run, None

    def t_gridfs(self, ops, param):
        name = self.name("fs")
        self.db.drop_collection(name + ".files")
        self.db.drop_collection(name + ".chunks")
        bucket = gridfs.GridFSBucket(self.db, bucket_name=name)
        blob = self.blob[:param]

        def run():
            for j in range(ops):
                fid = bucket.upload_from_stream("blob-%d" % j, blob)
                back = bucket.open_download_stream(fid).read()
                if back != blob:
                    raise RuntimeError("gridfs: downloaded bytes differ")
        return run, None

    def t_session_touch(self, ops, param):
        coll = self.db.bench_sessions
        now = datetime.datetime.utcnow()
        coll.update_many({}, {"$set": {"lastSeen": now, "expiresAt": now + SESSION_IDLE}})
        n = self.sessions_n

        def run():
            for j in range(ops):
                key = session_key(j % n)
                now = datetime.datetime.utcnow()
                d = coll.find_one({"_id": key, "expiresAt": {"$gt": now}})
                if d is None:
                    raise RuntimeError("session %d not found" % (j % n))
                if now - d["lastSeen"] > SESSION_TOUCH:
                    coll.update_one({"_id": key}, {"$set": {
                        "lastSeen": now, "expiresAt": now + SESSION_IDLE}})
        return run, None

    def t_cache_get(self, ops, param):
        coll = self.db.bench_cache
        n = self.cache_n

        def run():
            for j in range(ops):
                d = coll.find_one({"_id": "user:%d" % (j % n),
                                   "expiresAt": {"$gt": datetime.datetime.utcnow()}})
                if d is None or not isinstance(d.get("value"), dict):
                    raise RuntimeError("cache miss for user:%d" % (j % n))
        return run, None

    def t_cache_set(self, ops, param):
        coll = self.db.bench_cache
        flat, fn, cn = self.flat, self.flat_n, self.cache_n

        def run():
            for j in range(ops):
                i = j % fn
                key = "user:%d" % (i % cn)
                coll.replace_one({"_id": key},
                                 {"_id": key, "value": flat[i],
                                  "expiresAt": datetime.datetime.utcnow() + CACHE_TTL},
                                 upsert=True)
        return run, None

    def t_event_log_sync(self, ops, param):
        coll = self.db[self.name("events")]
        coll.drop()
        metas, mn = self.metas, self.meta_n

        def run():
            for j in range(ops):
                uid, etype, meta = metas[j % mn]
                coll.insert_one({"user_id": uid, "event_type": etype, "metadata": meta,
                                 "timestamp": datetime.datetime.utcnow()})
        return run, None

    def _concurrent(self, ops, nthreads):
        flat_c = self.db.bench_flat
        ins = self.db[self.name("conc")]
        upd = self.db.bench_conc_upd
        ins.drop()
        n = self.flat_coll_n
        # insert_one adds _id to its argument: copies made before the clock.
        copies = {j: dict(self.flat[j % self.flat_n]) for j in range(ops) if j % 4 == 2}
        errors = []

        def worker(first, count):
            try:
                for j in range(first, first + count):
                    m = j % 4
                    if m < 2:
                        if flat_c.find_one({"_id": (j * 7919) % n}) is None:
                            raise RuntimeError("find one: missing %d" % ((j * 7919) % n))
                    elif m == 2:
                        ins.insert_one(copies[j])
                    else:
                        upd.update_one({"_id": j % 100}, {"$inc": {"n": 1}})
            except Exception as e:  # reported by the main thread
                errors.append(repr(e))

        def run():
            per = ops // nthreads
            threads = []
            for t in range(nthreads):
                count = per + (ops % nthreads if t == nthreads - 1 else 0)
                th = threading.Thread(target=worker, args=(t * per, count))
                th.start()
                threads.append(th)
            for th in threads:
                th.join()
            if errors:
                raise RuntimeError(errors[0])
        return run, None

    def t_concurrent_8(self, ops, param):
        return self._concurrent(ops, param)

    def t_concurrent_32(self, ops, param):
        return self._concurrent(ops, param)

    def run(self, task, ops, param):
        fn = getattr(self, "t_" + task, None)
        if fn is None:
            return {"status": "na", "error": "not implemented for pymongo"}
        try:
            timed, after = fn(ops, param)
            hwm_reset()
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.perf_counter()
            extra = timed()
            wall = time.perf_counter() - t0
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            peak = hwm_kb()
            if after:
                after()
        except Exception as e:  # one failed task must not end the run
            return {"status": "failed", "error": "%s: %r" % (task, e)}
        out = {"status": "ok", "ops": ops, "wall_s": wall, "peak_rss_kb": peak,
               "cpu_s": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)}
        if extra:
            out.update(extra)
        return out

    # ---- standalone mode only: seed the shared collections as bench.c does

    def seed(self, stream_docs):
        def fill(name, n, gen):
            self.db.drop_collection(name)
            for i in range(0, n, 1000):
                self.db[name].insert_many([gen(k) for k in range(i, min(n, i + 1000))])
        fill("bench_flat", self.flat_coll_n, lambda i: gen_flat(i, True))
        fill("bench_nested", self.nested_coll_n, lambda i: gen_nested(i, True))
        fill("bench_stream", stream_docs, lambda i: gen_flat(i, True))
        now = datetime.datetime.utcnow()
        fill("bench_sessions", self.sessions_n, lambda i: {
            "_id": session_key(i), "data": {"counter": i, "theme": "dark"},
            "userId": "user%d" % (i % 100), "createdAt": now, "lastSeen": now,
            "expiresAt": now + SESSION_IDLE})
        fill("bench_cache", self.cache_n, lambda i: {
            "_id": "user:%d" % i, "value": gen_flat(i, False),
            "expiresAt": now + CACHE_TTL})
        fill("bench_conc_upd", 100, lambda i: {"_id": i, "n": 0})


# Operations per run (full, quick) and parameter, as in bench.c's table.
STANDALONE = [
    ("run_command", 10000, 600, 0), ("find_one", 5000, 600, 0),
    ("insert_one_small", 5000, 600, 0), ("insert_one_large", 50, 10, 0),
    ("insert_one_large_invalid", 50, 10, 0),
    ("find_many", 10000, 2000, 0), ("insert_many_small", 10000, 2000, 0),
    ("insert_many_large", 20, 5, 0), ("bulk_insert", 50000, 5000, 1000),
    ("aggregate", 10, 3, 0), ("stream", 50000, 10000, STREAM_CHUNK),
    ("gridfs", 1, 1, -1), ("session_touch", 5000, 600, 0),
    ("cache_get", 5000, 600, 0), ("cache_set", 5000, 600, 0),
    ("event_log_sync", 5000, 600, 0), ("concurrent_8", 8000, 800, 8),
    ("concurrent_32", 16000, 1280, 32),
]


def info():
    return {"status": "ok", "python": platform.python_version(),
            "pymongo": pymongo.version, "c_extensions": bool(pymongo.has_c()),
            "fingerprint": fingerprint()}


def serve(uri):
    bench = Bench(uri)
    out = sys.stdout
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            break
        try:
            if words[0] == "info":
                reply = info()
            elif words[0] == "config":
                bench.configure(*[int(w) for w in words[1:9]])
                reply = {"status": "ok"}
            elif words[0] == "run":
                reply = bench.run(words[1], int(words[2]), int(words[3]))
            else:
                reply = {"status": "failed", "error": "unknown request %r" % words[0]}
        except Exception as e:
            reply = {"status": "failed", "error": repr(e)}
        out.write(json.dumps(reply) + "\n")
        out.flush()


def standalone(args):
    quick = args.quick
    bench = Bench(args.uri)
    n = (1000, 2000, 200, 200, 5000) if quick else (10000, 10000, 1000, 1000, 50000)
    stream_docs = 10000 if quick else 50000
    bench.configure(n[0], n[1], n[2], n[3], n[4], 1000, quick, stream_docs)
    only = set(args.tasks.split(",")) if args.tasks else None
    bench.seed(stream_docs)
    print(json.dumps(dict(info(), task="info")), flush=True)
    for name, full, q, param in STANDALONE:
        if only and name not in only:
            continue
        ops = q if quick else full
        if name == "gridfs":
            param = (5 if quick else 50) << 20
        if name == "stream":
            ops = stream_docs
        bench.run(name, ops if name == "find_many" else max(1, ops // 5), param)  # warm-up
        runs = [bench.run(name, ops, param) for _ in range(args.reps)]
        bad = [r for r in runs if r["status"] != "ok"]
        if bad:
            print(json.dumps({"task": name, "status": bad[0]["status"],
                              "error": bad[0].get("error", "")}), flush=True)
            continue
        cpu = [r["cpu_s"] * 1e6 / ops for r in runs]
        wall = [r["wall_s"] * 1e6 / ops for r in runs]
        res = {"task": name, "ops": ops, "reps": args.reps,
               "pymongo_cpu_us": statistics.median(cpu), "pymongo_cpu_us_min": min(cpu),
               "pymongo_cpu_us_max": max(cpu), "pymongo_wall_us": statistics.median(wall),
               "pymongo_wall_us_min": min(wall), "pymongo_wall_us_max": max(wall),
               "pymongo_peak_rss_kb": statistics.median(r["peak_rss_kb"] for r in runs)}
        if "peak_growth_kb" in runs[0]:
            res["pymongo_peak_rss_growth_kb"] = max(r["peak_growth_kb"] for r in runs)
        print(json.dumps(res), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--uri", default=os.environ.get("MONGO_CACHE_URI")
                   or os.environ.get("MONGO_TEST_URI"))
    p.add_argument("--serve", action="store_true", help="driven by bench.c")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--tasks", help="comma-separated task names (standalone)")
    p.add_argument("--reps", type=int, default=6)
    args = p.parse_args()
    if not args.uri:
        p.error("no server: pass --uri or set MONGO_CACHE_URI / MONGO_TEST_URI")
    if args.serve:
        serve(args.uri)
    else:
        standalone(args)


if __name__ == "__main__":
    main()
