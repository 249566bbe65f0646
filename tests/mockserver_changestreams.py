"""Change streams for tests/mock_server.py (replica-set mode only).

The server keeps an oplog-like, ordered list of write events (bounded by
--oplog-size entries).  Every entry has a sequence number and its own cluster
time (a bson Timestamp).  Resume tokens are {_data: <hex string>} like
MongoDB's; they start, as MongoDB's do, with 0x82 and the big-endian cluster
time, then carry the kind of token and the entry's sequence number:

    "82" TTTTTTTTIIIIIIII "2B02" KK SSSSSSSSSSSSSSSS "04"

    T = seconds, I = increment, K = 00 high-water mark (no event: "everything
    up to entry S was scanned"), 01 event of entry S, 02 invalidate after S;
    S = sequence number.

A token for an entry that is no longer kept (or from before this server
started) gives ChangeStreamHistoryLost (286); a token of this server's era
that names no kept entry gives ChangeStreamFatalError (280).  Tokens of a
real mongod are read for their cluster time only (so they give 286 or 280).
"""

import collections
import copy
import re
import threading
import time
from collections import OrderedDict

from bson.int64 import Int64
from bson.son import SON
from bson.timestamp import Timestamp

import mongomock

ALLOWED_STAGE_FIELDS = {'resumeAfter', 'startAfter', 'startAtOperationTime', 'fullDocument',
                        'allChangesForCluster'}
ALLOWED_FOLLOWING = {'$match', '$project', '$addFields', '$set', '$unset', '$replaceRoot',
                     '$replaceWith', '$redact'}
INTERNAL_DBS = ('admin', 'config', 'local')
_TOKEN_RE = re.compile(r'^82([0-9A-F]{8})([0-9A-F]{8})2B02(0[0-2])([0-9A-F]{16})04$')
_HEX_RE = re.compile(r'^[0-9A-Fa-f]*$')


def make_token(ts, kind, seq):
    return SON([('_data', '82%08X%08X2B02%02X%016X04' % (ts.time, ts.inc, kind, seq))])


def _ts_key(ts):
    return (ts.time, ts.inc)


class ChangeStreams(object):
    def __init__(self, engine, max_entries):
        self.eng = engine
        self.max_entries = max(1, int(max_entries))
        self.entries = collections.deque()
        self.first_seq = 1          # sequence number of entries[0]
        self.next_seq = 1
        self.cond = threading.Condition(threading.Lock())
        self.start_ts = engine.tick()
        self.last_ts = self.start_ts

    # ------------------------------------------------------------ writing
    def log(self, op, db, coll, **fields):
        """Appends one entry (called with the store lock held)."""
        ts = self.eng.tick()
        e = dict(seq=self.next_seq, ts=ts, op=op, db=db, coll=coll)
        e.update(fields)
        with self.cond:
            self.entries.append(e)
            self.next_seq += 1
            self.last_ts = ts
            while len(self.entries) > self.max_entries:
                self.entries.popleft()
                self.first_seq += 1
            self.cond.notify_all()
        return ts

    def _entry(self, seq):
        if seq < self.first_seq or seq >= self.next_seq:
            return None
        return self.entries[seq - self.first_seq]

    # ------------------------------------------------------------ opening
    def _err(self, code, msg, **extra):
        return CmdError(code, msg, **extra)

    def parse_token(self, tok, opt):
        if not isinstance(tok, dict) or not isinstance(tok.get('_data'), str):
            raise self._err(9, 'Bad resume token: _data of missing or of wrong type. '
                            'Expected string, got %r' % (tok,))
        data = tok['_data']
        if not _HEX_RE.match(data) or len(data) % 2:
            raise self._err(9, 'resume token string was not a valid hex string')
        m = _TOKEN_RE.match(data.upper())
        if m:
            return (Timestamp(int(m.group(1), 16), int(m.group(2), 16)), int(m.group(3), 16),
                    int(m.group(4), 16))
        if data.upper().startswith('82') and len(data) >= 18:
            return (Timestamp(int(data[2:10], 16), int(data[10:18], 16)), None, None)
        raise self._err(9, 'Bad resume token: could not parse _data %s' % data)

    def _history_lost(self):
        return self._err(286, 'Resume of change stream was not possible, as the resume point may '
                              'no longer be in the oplog.')

    def _oldest_ts(self):
        return self.entries[0]['ts'] if self.entries and self.first_seq > 1 else self.start_ts

    def start_position(self, spec):
        """Sequence number of the first entry the stream looks at."""
        n = sum(1 for k in ('resumeAfter', 'startAfter', 'startAtOperationTime') if k in spec)
        if n > 1:
            raise self._err(40674, 'Only one type of resume option is allowed, but multiple were found.')
        if 'startAtOperationTime' in spec:
            t = spec['startAtOperationTime']
            if not isinstance(t, Timestamp):
                raise self._err(14, "BSON field '$changeStream.startAtOperationTime' is the wrong type "
                                "'%s', expected type 'timestamp'" % type(t).__name__)
            if _ts_key(t) < _ts_key(self._oldest_ts()):
                raise self._history_lost()
            for e in self.entries:
                if _ts_key(e['ts']) >= _ts_key(t):
                    return e['seq']
            return self.next_seq
        for opt in ('resumeAfter', 'startAfter'):
            if opt not in spec:
                continue
            ts, kind, seq = self.parse_token(spec[opt], opt)
            if kind == 2 and opt == 'resumeAfter':
                raise self._err(260, "Attempting to resume a change stream using 'resumeAfter' is not "
                                     "allowed from an invalidate notification.")
            if _ts_key(ts) < _ts_key(self._oldest_ts()):
                raise self._history_lost()
            if kind is not None:
                if seq < self.first_seq - (1 if kind == 0 else 0):
                    raise self._history_lost()
                e = self._entry(seq)
                if kind == 0 and seq < self.next_seq and _ts_key(ts) <= _ts_key(self.last_ts) \
                        and (e is None or _ts_key(e['ts']) == _ts_key(ts)):
                    return seq + 1
                if e is not None and _ts_key(e['ts']) == _ts_key(ts):
                    return seq + 1
            raise self._err(280, 'cannot resume stream; the resume token was not found. %s'
                            % _json(spec[opt]))
        return self.next_seq

    def open(self, db, cname, cmd, pipeline):
        """aggregate with a first $changeStream stage (store lock held)."""
        spec = pipeline[0]['$changeStream']
        if not isinstance(spec, dict):
            raise self._err(50808, '$changeStream stage expects a document as argument.')
        for k in spec:
            if k not in ALLOWED_STAGE_FIELDS:
                raise self._err(40415, "BSON field '$changeStream.%s' is an unknown field." % k)
        full = spec.get('fullDocument', 'default')
        if full not in ('default', 'updateLookup'):
            raise self._err(2, "Enumeration value '%s' for field '$changeStream.fullDocument' is not a "
                               "valid value." % (full,))
        all_cluster = bool(spec.get('allChangesForCluster', False))
        if isinstance(cname, str):
            if all_cluster:
                raise self._err(72, "A $changeStream with 'allChangesForCluster:true' may only be opened "
                                    "on the 'admin' database, and with no collection name")
            if db in INTERNAL_DBS:
                raise self._err(73, '$changeStream may not be opened on the internal %s database' % db)
            if cname.startswith('system.'):
                raise self._err(73, '$changeStream may not be opened on the internal %s.%s collection'
                                % (db, cname))
            scope = ('coll', db, cname)
            ns = '%s.%s' % (db, cname)
        else:
            if all_cluster:
                if db != 'admin':
                    raise self._err(72, "A $changeStream with 'allChangesForCluster:true' may only be "
                                        "opened on the 'admin' database, and with no collection name")
                scope = ('cluster', None, None)
            else:
                if db in INTERNAL_DBS:
                    raise self._err(73, '$changeStream may not be opened on the internal %s database' % db)
                scope = ('db', db, None)
            ns = '%s.$cmd.aggregate' % db
        rest = []
        for st in pipeline[1:]:
            op = next(iter(st)) if isinstance(st, dict) and st else None
            if op == '$changeStream':
                raise self._err(40602, '$changeStream is only valid as the first stage in a pipeline.')
            if op not in ALLOWED_FOLLOWING:
                raise self._err(20, '%s is not permitted in a $changeStream pipeline' % op)
            rest.append(st)
        rest = self.eng._rewrite_pipeline(rest)
        pos = self.start_position(spec)
        state = dict(scope=scope, pos=pos, full=full, pipeline=rest, closed=False, busy=False,
                     killed=False, pending=[])
        bs = (cmd.get('cursor') or {}).get('batchSize')
        batch, pbrt = self.scan(state, DEFAULT_FIRST_BATCH if bs is None else int(bs))
        import random
        cid = random.randint(1, 2 ** 62)
        if not state['closed']:
            self.eng.cursors[cid] = {'ns': ns, 'docs': None, 'ts': time.time(), 'cs': state}
        else:
            cid = 0
        return OrderedDict(cursor=OrderedDict([('firstBatch', batch), ('postBatchResumeToken', pbrt),
                                               ('id', Int64(cid)), ('ns', ns)]))

    # ------------------------------------------------------------ reading
    def _relevant(self, e, scope):
        kind, sdb, scoll = scope
        op = e['op']
        if kind == 'cluster':
            return e['db'] not in INTERNAL_DBS and not (e['coll'] or '').startswith('system.')
        if e['db'] != sdb:
            return False
        if kind == 'db':
            return not (e['coll'] or '').startswith('system.')
        if op == 'dropDatabase':
            return False
        if op == 'rename':
            return e['coll'] == scoll or tuple(e['to']) == (sdb, scoll)
        return e['coll'] == scoll

    def _events(self, e, state):
        """The event documents an entry gives a stream (0, 1 or 2)."""
        scope = state['scope']
        if not self._relevant(e, scope):
            return []
        op = e['op']
        d = OrderedDict()
        d['_id'] = make_token(e['ts'], 1, e['seq'])
        d['operationType'] = op
        d['clusterTime'] = e['ts']
        if op in ('insert', 'replace'):
            d['fullDocument'] = copy.deepcopy(e['full'])
        elif op == 'update' and state['full'] == 'updateLookup':
            d['fullDocument'] = self._lookup(e)
        if op == 'dropDatabase':
            d['ns'] = SON([('db', e['db'])])
        else:
            d['ns'] = SON([('db', e['db']), ('coll', e['coll'])])
        if op == 'rename':
            d['to'] = SON([('db', e['to'][0]), ('coll', e['to'][1])])
        if op in ('insert', 'update', 'replace', 'delete'):
            d['documentKey'] = copy.deepcopy(e['key'])
        if op == 'update':
            d['updateDescription'] = copy.deepcopy(e['desc'])
        out = [d]
        if (scope[0] == 'coll' and op in ('drop', 'rename')) or \
                (scope[0] == 'db' and op == 'dropDatabase'):
            inv = OrderedDict()
            inv['_id'] = make_token(e['ts'], 2, e['seq'])
            inv['operationType'] = 'invalidate'
            inv['clusterTime'] = e['ts']
            out.append(inv)
        return out

    def _lookup(self, e):
        cstore = self.eng.client._store[e['db']][e['coll']]
        if not cstore.is_created:
            return None
        doc = cstore._documents.get(_doc_key(e['key']['_id']))
        return copy.deepcopy(doc) if doc is not None else None

    def _apply_pipeline(self, ev, state):
        if not state['pipeline']:
            return ev
        token = ev['_id']
        out = list(mongomock.aggregate.process_pipeline([ev], self.eng.client['admin'],
                                                        state['pipeline'], None))
        if not out:
            return None
        res = out[0]
        if res.get('_id') != token:
            raise self._err(280, 'Encountered an event whose _id field, which contains the resume token, '
                                 'was modified by the pipeline. Modifying the _id field of an event makes '
                                 'it impossible to resume the stream from that point. Only transformations '
                                 'that retain the unmodified _id field are allowed.')
        return res

    def scan(self, state, batch_size):
        """Next batch of a stream (store lock held): (events, postBatchResumeToken)."""
        if batch_size is None or batch_size < 0:
            batch_size = None
        batch = []
        last_event_pos = None
        if state['pos'] < self.first_seq:
            raise self._history_lost()
        if state['pending']:
            ev = state['pending'].pop(0)
            state['closed'] = True
            return [ev], ev['_id']
        while not state['closed'] and (batch_size is None or len(batch) < batch_size):
            e = self._entry(state['pos'])
            if e is None:
                break
            state['pos'] += 1
            evs = self._events(e, state)
            for i, ev in enumerate(evs):
                if ev['operationType'] == 'invalidate':
                    if batch_size is not None and len(batch) >= batch_size:
                        state['pending'].append(ev)
                        break
                    batch.append(ev)
                    state['closed'] = True
                    return batch, ev['_id']
                res = self._apply_pipeline(ev, state)
                if res is not None:
                    batch.append(res)
                    last_event_pos = e['seq']
            if batch_size is not None and len(batch) >= batch_size:
                break
        scanned = state['pos'] - 1
        if batch and last_event_pos == scanned:
            pbrt = batch[-1]['_id']
        elif scanned >= self.first_seq:
            pbrt = make_token(self._entry(scanned)['ts'], 0, scanned)
        else:
            e = self._entry(scanned)
            pbrt = make_token(e['ts'] if e else (self.start_ts if scanned < self.first_seq else self.last_ts),
                              0, scanned)
        return batch, pbrt

    def has_new(self, pos):
        return pos < self.next_seq

    def wait(self, pos, deadline):
        with self.cond:
            left = deadline - time.time()
            if pos >= self.next_seq and left > 0:
                self.cond.wait(min(left, 0.25))

    def wake(self):
        with self.cond:
            self.cond.notify_all()


DEFAULT_FIRST_BATCH = 101
# Set by mockserver_common.py (mock_server.py may run as __main__).
CmdError = None
_doc_key = None


def _json(doc):
    from bson import json_util
    try:
        return json_util.dumps(doc)
    except Exception:
        return repr(doc)


# ---------------------------------------------------------------------------
# updateDescription
# ---------------------------------------------------------------------------

def update_description(before, after, update, v5=False):
    """MongoDB-like updateDescription for a modifier update: the paths the
    operators named, at the granularity they named them (a dotted path
    reports that sub-field, a whole field reports the whole value; elements
    appended to an array report as 'field.<index>')."""
    touched = set()
    for op, arg in update.items():
        if isinstance(arg, dict):
            for path in arg:
                touched.add(path)
                if op == '$rename' and isinstance(arg[path], str):
                    touched.add(arg[path])
    updated = OrderedDict()
    removed = []

    def deep(prefix):
        return any(t.startswith(prefix + '.') for t in touched)

    def walk(b, a, prefix):
        if isinstance(b, dict) and isinstance(a, dict):
            for k, v in a.items():
                p = prefix + k
                if k not in b:
                    updated[p] = copy.deepcopy(v)
                elif b[k] != v or type(b[k]) != type(v):
                    if deep(p) and isinstance(v, (dict, list)) and type(b[k]) == type(v):
                        walk(b[k], v, p + '.')
                    elif isinstance(v, list) and isinstance(b[k], list) and len(v) > len(b[k]) \
                            and v[:len(b[k])] == b[k]:
                        for i in range(len(b[k]), len(v)):
                            updated['%s.%d' % (p, i)] = copy.deepcopy(v[i])
                    else:
                        updated[p] = copy.deepcopy(v)
            for k in b:
                if k not in a:
                    removed.append(prefix + k)
        elif isinstance(b, list) and isinstance(a, list):
            if len(a) < len(b):
                updated[prefix[:-1]] = copy.deepcopy(a)
                return
            for i, v in enumerate(a):
                p = '%s%d' % (prefix, i)
                if i >= len(b):
                    updated[p] = copy.deepcopy(v)
                elif b[i] != v:
                    if deep(p) and isinstance(v, (dict, list)) and type(b[i]) == type(v):
                        walk(b[i], v, p + '.')
                    else:
                        updated[p] = copy.deepcopy(v)
    walk(before, after, '')
    desc = OrderedDict(updatedFields=updated, removedFields=removed)
    if v5:
        desc['truncatedArrays'] = []
    return desc
