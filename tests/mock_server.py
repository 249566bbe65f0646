#!/usr/bin/python3
"""MongoDB-wire-compatible test server for mongo_helper's test-suite.

Wire protocol handling comes from mockupdb (OP_QUERY legacy handshake, OP_MSG
incl. document sequences); storage, query, update and aggregation come from
mongomock.  The server presents itself as a MongoDB 4.4 standalone (or, with
--replset, as a replica-set member; with --version 5.0.0 as MongoDB 5.0, wire
version 13).  It is ONLY meant for tests.

Run with Debian's /usr/bin/python3 (needs python3-mockupdb, python3-mongomock,
python3-pymongo).  See `--help` for the command line.

Test-only commands (as in a real mongod with enableTestCommands, plus one
mock-specific admin command):
  {sleep: 1, millis: N}                      sleep N ms (store not locked)
  {configureFailPoint: "failCommand", mode: "alwaysOn"|"off"|{times: n}|{skip: n},
   data: {failCommands: [...], errorCode, errorLabels, closeConnection,
          blockConnection, blockTimeMS, writeConcernError, appName}}
  {configureFailPoint: "failGetMoreAfterCursorCheckout", mode: ..., data: {errorCode}}
                                             a getMore fails after its cursor was
                                             checked out (so a change-stream cursor
                                             gets ResumableChangeStreamError)
  {mockSetRole: "primary"|"secondary"}       (admin) flip the replica-set role
  {replSetStepDown: secs, secondaryCatchUpPeriodSecs, force}
                                             (admin) the real command: becomes
                                             secondary; a one-member set (no --hosts
                                             or only itself) is primary again after
                                             `secs`, a member of a larger set stays
                                             secondary until mockSetRole

Replica-set mode (--replset NAME)
  hello reports setName/hosts/primary/me/electionId/setVersion/lastWrite; every
  reply carries $clusterTime (zero signature) and operationTime.  Each write
  gets its own cluster time (Timestamp); a higher $clusterTime sent by a client
  advances the clock.  Retryable writes: a write with lsid + txnNumber runs once,
  a retry with the same txnNumber gets the recorded reply, an older txnNumber
  gets TransactionTooOld (225).  Error labels as MongoDB 4.4+ adds them:
  RetryableWriteError for codes 6 7 89 91 189 262 9001 10107 11600 11602 13435
  13436 (top-level or writeConcernError) on insert/update/delete/findAndModify
  with txnNumber; failCommand's `errorLabels` replaces the server's labels (as
  in MongoDB).  A standalone refuses txnNumber (20 IllegalOperation).

Change streams (replica-set mode; a standalone answers 40573)
  aggregate with a first $changeStream stage on a collection, on a database
  (aggregate: 1) or on the cluster (admin, allChangesForCluster: true).  Events
  of this server's own writes: insert, update (updateDescription with
  updatedFields/removedFields; truncatedArrays with --version 5.0), replace,
  delete (also TTL deletions), drop, rename (renameCollection), dropDatabase,
  invalidate (collection stream: after drop or rename of/onto it; database
  stream: after dropDatabase).  fullDocument: "updateLookup" reads the current
  document when the event is returned (null once deleted).  Options:
  resumeAfter, startAfter (also from an invalidate token), startAtOperationTime.
  Following stages: $match $project $addFields $set $unset $replaceRoot
  $replaceWith $redact (changing _id gives 280).  Every batch carries
  postBatchResumeToken.  getMore waits for new events up to maxTimeMS (default
  1 s) without holding the store lock.  Only failGetMoreAfterCursorCheckout
  errors (and real errors after checkout) get ResumableChangeStreamError;
  failCommand errors on getMore do not (as in MongoDB 4.4+, SERVER-46091), so a
  driver resumes after failGetMoreAfterCursorCheckout, a closed connection,
  CursorNotFound or failCommand with errorLabels: ["ResumableChangeStreamError"].
  Resume tokens: see mockserver_changestreams.py.  --oplog-size N events are
  kept; older tokens give ChangeStreamHistoryLost (286).  Not produced: events
  for $out targets, create/createIndexes (DDL events need 6.0's
  showExpandedEvents), transactions.  The oplog is not persisted with --dbpath
  (after a restart older tokens give 286).

Text search and geospatial queries (details, the text score rule and the
tokenizer: see mockserver_search.py)
  createIndexes accepts text indexes ({f: "text"}, several fields, "$**",
  weights, default_language, language_override, textIndexVersion; one text
  index per collection, else 85 IndexOptionsConflict; listIndexes shows
  {_fts: "text", _ftsx: 1} and the options), 2dsphere and 2d indexes (values a
  geo index cannot take are refused on write: 16755 / 16804).  $text
  ($search, $language, $caseSensitive, $diacriticSensitive) at the top level of
  find / count / distinct / update / delete / findAndModify filters and in a
  first $match stage; {$meta: "textScore"} in find projection and sort and in
  later $project/$addFields/$set/$sort stages; no text index: 27.
  Text score: MongoDB's own rule: for each field of weight W and each distinct
  stemmed term t that occurs n times among the N indexed words of that field,
  W * (1 + 1/2 + ... + 1/2^(n-1)) * (0.5 + 0.5 n/N) (x1.1 when the field is
  exactly that word); a document's score is the sum over the query's distinct
  terms.  More matched terms rank higher; weights multiply.
  $near / $nearSphere (GeoJSON point: metres on a 6378100 m sphere, needs a
  2dsphere index; legacy pair: $nearSphere in radians (2d or 2dsphere index),
  $near flat (2d index)), $maxDistance/$minDistance, results nearest first; no
  suitable index: 291.  $near in aggregate / countDocuments: 2 (4.4) or
  5626500 (5.0), as MongoDB.  $geoWithin ($centerSphere, $box, $polygon,
  $center, $geometry Polygon/MultiPolygon) anywhere in a filter, no index
  needed (aggregate: first $match only).  $geoNear (first stage): near,
  distanceField, spherical, maxDistance, minDistance, query, key,
  distanceMultiplier, includeLocs; the index-choice errors of MongoDB (27).
  Not implemented (238): $geoIntersects, geoHaystack.

Time-series collections (--version 5.0.x)
  create with timeseries {timeField, metaField, granularity} and
  expireAfterSeconds, validated like 5.0 (40414 missing timeField, 40415
  unknown field, 2 bad granularity, 72 bad field names / expireAfterSeconds
  without timeseries, 14 wrong types); inserts need a date in timeField (2);
  queries work as on a collection; updates/deletes answer 5.0's 166 (the
  collection is a view); listCollections shows type "timeseries" and
  options.timeseries (with bucketMaxSpanSeconds); expireAfterSeconds deletes
  measurements by timeField (per document, not per bucket).  The
  system.buckets collection is not exposed.  On 4.4 (default), create with
  timeseries / expireAfterSeconds answers 40415 (unknown field).
"""

import argparse
import copy
import datetime
import errno
import itertools
import os
import random
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import traceback
import uuid
from collections import OrderedDict

import bson
from bson import json_util
from bson.binary import Binary
from bson.int64 import Int64
from bson.objectid import ObjectId
from bson.son import SON
from bson.timestamp import Timestamp

import mockupdb
from mockupdb import (OpMsg, OpQuery, Command, OpGetMore, OpKillCursors,
                      OpMsgReply, OpReply, MockupDB, bind_tcp_socket,
                      mock_server_receive_request)

import mongomock
from mongomock import helpers as mm_helpers
from mongomock import store as mm_store
from mongomock import filtering as mm_filtering
from mongomock import collection as mm_collection
import pymongo.errors as pm_errors

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mockserver_changestreams as mcs  # noqa: E402
import mockserver_search as msearch  # noqa: E402

MAX_BSON = 16 * 1024 * 1024
DEFAULT_BATCH = 101
OP_MSG_MORE_TO_COME = 2

CODE_NAMES = {
    1: 'InternalError', 2: 'BadValue', 9: 'FailedToParse', 11: 'UserNotFound',
    13: 'Unauthorized', 14: 'TypeMismatch', 20: 'IllegalOperation',
    26: 'NamespaceNotFound', 27: 'IndexNotFound', 43: 'CursorNotFound',
    48: 'NamespaceExists', 50: 'MaxTimeMSExpired', 59: 'CommandNotFound',
    67: 'CannotCreateIndex', 72: 'InvalidOptions', 73: 'InvalidNamespace',
    85: 'IndexOptionsConflict', 86: 'IndexKeySpecsConflict',
    89: 'NetworkTimeout', 91: 'ShutdownInProgress', 112: 'WriteConflict',
    168: 'InvalidPipelineOperator', 189: 'PrimarySteppedDown',
    238: 'NotImplemented', 251: 'NoSuchTransaction',
    262: 'ExceededTimeLimit', 291: 'NoQueryExecutionPlans',
    6: 'HostUnreachable', 7: 'HostNotFound',
    10107: 'NotWritablePrimary', 11000: 'DuplicateKey', 11600: 'InterruptedAtShutdown',
    11602: 'InterruptedDueToReplStateChange', 13435: 'NotPrimaryNoSecondaryOk',
    13436: 'NotPrimaryOrSecondary', 40573: 'Location40573',
    40324: 'Location40324', 40415: 'Location40415',
    63: 'StaleShardVersion', 76: 'NoReplicationEnabled', 133: 'FailedToSatisfyReadPreference',
    143: 'CursorInUse', 150: 'StaleEpoch', 225: 'TransactionTooOld', 234: 'RetryChangeStream',
    237: 'CursorKilled', 260: 'InvalidResumeToken', 280: 'ChangeStreamFatalError',
    286: 'ChangeStreamHistoryLost', 9001: 'SocketException', 13388: 'StaleConfig',
    16755: 'Location16755', 166: 'CommandNotSupportedOnView', 40414: 'Location40414', 17262: 'Location17262',
}

# Codes for which MongoDB 4.4+ adds the RetryableWriteError label to a
# retryable write (a write command with txnNumber, outside a transaction).
RETRYABLE_WRITE_CODES = {6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436}
# Codes for which MongoDB 4.4+ adds ResumableChangeStreamError to an error
# raised by a getMore on a change-stream cursor (after the cursor was checked out).
RESUMABLE_CHANGE_STREAM_CODES = {6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435,
                                 13436, 63, 150, 13388, 234, 133}
RETRYABLE_WRITE_CMDS = {'insert', 'update', 'delete', 'findandmodify'}
# --version (major, minor) -> maxWireVersion
WIRE_VERSIONS = {(4, 4): 9, (5, 0): 13}

GENERIC_FIELDS = {'$db', 'lsid', '$clusterTime', 'txnNumber', '$readPreference',
                  'readConcern', 'writeConcern', 'apiVersion', 'apiStrict',
                  'apiDeprecationErrors', 'maxTimeMS', 'comment', '$client'}

# ---------------------------------------------------------------------------
# mongomock adjustments
# ---------------------------------------------------------------------------

# MongoDB keeps expired documents visible until the TTL monitor deletes them;
# mongomock hides them on every access.  Disable that: our monitor thread
# does the deletion.
mm_store.CollectionStore._remove_expired_documents = lambda self: None


def _geo_key_error(index, doc):
    """Why MongoDB would refuse doc's value(s) for a 2d/2dsphere index (None if fine)."""
    for field, kind in index['key']:
        if kind not in ('2d', '2dsphere'):
            continue
        try:
            v = mm_helpers.get_value_by_dot(doc, field)
        except (KeyError, TypeError, IndexError):
            continue
        if v is None:
            continue
        if kind == '2d':
            vals = v if isinstance(v, list) and v and isinstance(v[0], (list, dict)) else [v]
            for x in vals:
                p = msearch.legacy_pair(x)
                if p is None:
                    return "geo values must be 'legacy coordinate pairs' for 2d indexes"
                lo, hi = index.get('min', -180.0), index.get('max', 180.0)
                if not (lo <= p[0] < hi and lo <= p[1] < hi):
                    return 'point not in interval of [ %s, %s ) :: caused by :: %s' % (lo, hi, _fmt_val(x))
            continue
        vals = v if isinstance(v, list) and v and isinstance(v[0], (list, dict)) else [v]
        for x in vals:
            why = msearch.geojson_check(x)
            if why:
                return "Can't extract geo keys: %s  %s" % (_fmt_val(dict(doc)), why)
    return None


def _mh_ensure_uniques(self, new_data):
    """Replacement for mongomock's unique check that records which index;
    also refuses values a 2d/2dsphere index cannot take (as MongoDB)."""
    for name, index in list(self._store.indexes.items()):
        if any(v in ('2d', '2dsphere') for _, v in index.get('key', [])):
            err = _geo_key_error(index, new_data)
            if err:
                raise pm_errors.OperationFailure(err, 16755 if '2dsphere' in [v for _, v in index['key']]
                                                 else 16804)
        if not index.get('unique'):
            continue
        keys = index.get('key')
        values = OrderedDict()
        for key, _ in keys:
            try:
                values[key] = mm_helpers.get_value_by_dot(new_data, key)
            except KeyError:
                values[key] = None
        if index.get('sparse') and all(v is None for v in values.values()):
            continue
        pfe = index.get('partialFilterExpression')
        if pfe is not None and not mm_filtering.filter_applies(pfe, new_data):
            continue
        spec = dict(values)
        if pfe is not None:
            spec = {'$and': [pfe, spec]}
        if len(list(self._iter_documents(spec))) > 1:
            err = pm_errors.DuplicateKeyError('E11000 Duplicate Key Error', 11000)
            err.mh_index = (name, keys, values)
            raise err


mm_collection.Collection._ensure_uniques = _mh_ensure_uniques

_orig_iter_documents = mm_collection.Collection._iter_documents


def _mh_iter_documents(self, filter):
    # Fast path for {_id: <scalar>} (mongomock scans the whole collection).
    if isinstance(filter, dict) and len(filter) == 1 and '_id' in filter:
        v = filter['_id']
        if isinstance(v, (str, int, ObjectId)) and not isinstance(v, bool):
            doc = self._store._documents.get(v)
            if doc is not None and mm_filtering.filter_applies(filter, doc):
                return iter([doc])
            return iter([])
    return _orig_iter_documents(self, filter)


mm_collection.Collection._iter_documents = _mh_iter_documents


class CmdError(Exception):
    def __init__(self, code, errmsg, code_name=None, **extra):
        Exception.__init__(self, errmsg)
        self.code = code
        self.errmsg = errmsg
        self.code_name = code_name or CODE_NAMES.get(code, 'Location%d' % code)
        self.extra = extra

    def doc(self):
        d = OrderedDict(ok=0.0, errmsg=self.errmsg, code=self.code,
                        codeName=self.code_name)
        d.update(self.extra)
        return d


def _fmt_val(v):
    if isinstance(v, str):
        return json_util.dumps(v)
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, ObjectId):
        return "ObjectId('%s')" % v
    if v is None:
        return 'null'
    if isinstance(v, dict):
        return '{ ' + ', '.join('%s: %s' % (k, _fmt_val(x)) for k, x in v.items()) + ' }'
    if isinstance(v, list):
        return '[ ' + ', '.join(_fmt_val(x) for x in v) + ' ]'
    return json_util.dumps(v)


def dup_key_error(ns, index_name, key_pattern, key_value):
    kv = SON(key_value.items())
    msg = 'E11000 duplicate key error collection: %s index: %s dup key: %s' % (
        ns, index_name, _fmt_val(dict(kv)))
    return OrderedDict(code=11000, errmsg=msg, keyPattern=SON(
        (k, d) for k, d in key_pattern), keyValue=kv)


def _doc_key(_id):
    return mm_helpers.hashdict(_id) if isinstance(_id, dict) else _id


mcs.CmdError = CmdError
mcs._doc_key = _doc_key
msearch.CmdError = CmdError
msearch._fmt_val = _fmt_val


TEXT_SCORE_FIELD = msearch.TEXT_SCORE_FIELD


def _bson_type_name(v):
    if isinstance(v, bool):
        return 'bool'
    if isinstance(v, int):
        return 'int' if -2 ** 31 <= v < 2 ** 31 else 'long'
    if isinstance(v, float):
        return 'double'
    if isinstance(v, str):
        return 'string'
    if isinstance(v, dict):
        return 'object'
    if isinstance(v, list):
        return 'array'
    if v is None:
        return 'null'
    return type(v).__name__


_set_path = msearch._set_path


def bson_size(doc):
    return len(bson.BSON.encode(doc))


def _dict_key(d):
    try:
        return bson.BSON.encode({'v': d})
    except Exception:
        return repr(d).encode()


# ---------------------------------------------------------------------------
# The command engine
# ---------------------------------------------------------------------------

class Connection(object):
    _ids = itertools.count(1)

    def __init__(self, sock, addr):
        self.sock = sock
        self.addr = addr
        self.id = next(Connection._ids)
        self.app_name = None


class Engine(msearch.SearchMixin):
    def __init__(self, opts):
        self.opts = opts
        self.version = tuple(int(x) for x in opts.version.split('.'))
        self.client = mongomock.MongoClient()
        self.lock = threading.RLock()
        self.cursors = {}
        self.coll_uuids = {}
        self.fp_lock = threading.Lock()
        self.failpoints = {}
        self.role = 'secondary' if opts.secondary else 'primary'
        self.election_id = self._new_election_id()
        self.term = 1
        self.stepdown_timer = None
        # Logical clock (replica-set mode): each write gets its own Timestamp.
        self.ct_lock = threading.Lock()
        self.ct_secs, self.ct_inc = int(time.time()), 0
        # Retryable writes: lsid -> (txnNumber, reply) of the last write.
        self.txn_records = {}
        # Change streams: an oplog-like list of write events (replica sets only).
        self.cs = mcs.ChangeStreams(self, opts.oplog_size) if opts.replset else None
        self.start_time = time.time()
        self.conn_lock = threading.Lock()
        self.conn_current = 0
        self.conn_total = 0
        self.port = None
        self.host = opts.host
        self.log_lock = threading.Lock()
        self.cmd_log = open(opts.command_log, 'a') if opts.command_log else None
        self.journal = None
        self.journal_pending = []
        self.ts_colls = {}   # (db, coll) -> time-series options (--version 5.0)
        if opts.dbpath:
            os.makedirs(opts.dbpath, exist_ok=True)
            path = os.path.join(opts.dbpath, 'journal.bson')
            self._replay(path)
            self.journal = open(path, 'ab')

    # ---------------- persistence -----------------
    def _replay(self, path):
        if not os.path.exists(path):
            return
        with open(path, 'rb') as f:
            data = f.read()
        pos = 0
        good = 0
        n = 0
        while pos + 4 <= len(data):
            size = struct.unpack('<i', data[pos:pos + 4])[0]
            if size < 5 or pos + size > len(data):
                break
            try:
                entry = bson.BSON(data[pos:pos + size]).decode()
            except Exception:
                break
            self._apply_journal(entry)
            pos += size
            good = pos
            n += 1
        if good != len(data):
            # Truncated tail (killed in the middle of a write): drop it.
            with open(path, 'r+b') as f:
                f.truncate(good)
        if self.opts.verbose:
            print('replayed %d journal entries' % n, file=sys.stderr)

    def _apply_journal(self, e):
        op = e['op']
        sstore = self.client._store
        if op == 'dropdb':
            self.client.drop_database(e['db'])
            return
        cstore = sstore[e['db']][e['coll']]
        if op == 'put':
            doc = e['doc']
            cstore._documents[_doc_key(doc['_id'])] = doc
        elif op == 'del':
            cstore._documents.pop(_doc_key(e['id']), None)
        elif op == 'create':
            cstore.create()
            if e.get('ts_options'):
                self.ts_colls[(e['db'], e['coll'])] = e['ts_options']
        elif op == 'drop':
            self.ts_colls.pop((e['db'], e['coll']), None)
            self.client[e['db']].drop_collection(e['coll'])
        elif op == 'rename':
            dstore = sstore[e['db']]
            dstore._collections[e['to']] = dstore._collections.pop(e['coll'])
            dstore._collections[e['to']].name = e['to']
        elif op == 'indexes':
            cstore.indexes = {}
            cstore._ttl_indexes = {}
            for ix in e['indexes']:
                spec = dict(ix['spec'])
                spec['key'] = [tuple(k) for k in spec['key']]
                cstore.create_index(ix['name'], spec)

    def j(self, **entry):
        if self.journal is not None:
            self.journal_pending.append(bson.BSON.encode(entry))

    def j_docs(self, db, coll, ids):
        if self.journal is None:
            return
        docs = self.client._store[db][coll]._documents
        for _id in ids:
            d = docs.get(_doc_key(_id))
            if d is None:
                self.j(op='del', db=db, coll=coll, id=_id)
            else:
                self.j(op='put', db=db, coll=coll, doc=d)

    def j_indexes(self, db, coll):
        if self.journal is None:
            return
        cstore = self.client._store[db][coll]
        self.j(op='indexes', db=db, coll=coll,
               indexes=[{'name': n, 'spec': s} for n, s in cstore.indexes.items()])

    def j_flush(self):
        if self.journal is not None and self.journal_pending:
            self.journal.write(b''.join(self.journal_pending))
            self.journal.flush()
            self.journal_pending = []

    # ---------------- change events -----------------
    def ev(self, op, db, coll, **fields):
        """Records one write in the oplog (replica-set mode) or just advances the clock."""
        if self.cs is not None:
            self.cs.log(op, db, coll, **fields)
        else:
            self.tick()

    def ev_doc(self, op, db, coll, _id, before=None, update=None):
        """insert / update / replace / delete event for the document _id (now stored state)."""
        if self.cs is None:
            self.tick()
            return
        cur = self.client._store[db][coll]._documents.get(_doc_key(_id))
        key = SON([('_id', _id)])
        if op == 'delete':
            self.cs.log('delete', db, coll, key=key)
        elif op == 'insert':
            self.cs.log('insert', db, coll, key=key, full=copy.deepcopy(cur))
        elif cur is None or before == cur:
            return
        elif op == 'replace':
            self.cs.log('replace', db, coll, key=key, full=copy.deepcopy(cur))
        else:
            self.cs.log('update', db, coll, key=key, desc=mcs.update_description(
                before, cur, update, self.version >= (5, 0)))

    def _snapshot(self, db, coll, ids):
        docs = self.client._store[db][coll]._documents
        return {_dict_key(i): copy.deepcopy(docs.get(_doc_key(i))) for i in ids}

    # ---------------- helpers -----------------
    def coll_exists(self, db, coll):
        return bool(self.client._store[db][coll].is_created)

    def coll_uuid(self, db, coll):
        key = (db, coll)
        if key not in self.coll_uuids:
            self.coll_uuids[key] = Binary(uuid.uuid4().bytes, 4)
        return self.coll_uuids[key]

    def me(self):
        return self.opts.me or '%s:%d' % (self.host, self.port)

    def log_command(self, cmd):
        if self.cmd_log is None:
            return
        d = OrderedDict((k, v) for k, v in cmd.items()
                        if k not in ('lsid', '$clusterTime'))
        try:
            line = json_util.dumps(d, json_options=json_util.CANONICAL_JSON_OPTIONS)
        except Exception as exc:
            line = json_util.dumps({'unserializable': repr(exc)})
        with self.log_lock:
            self.cmd_log.write(line + '\n')
            self.cmd_log.flush()

    # ---------------- failpoint -----------------
    FAILPOINTS = ('failCommand', 'failGetMoreAfterCursorCheckout')

    def _fire_failpoint(self, fpname, applies):
        """Returns None or the data of the fail point `fpname` if it fires now."""
        with self.fp_lock:
            fp = self.failpoints.get(fpname)
            if not fp:
                return None
            data = fp['data']
            if not applies(data):
                return None
            mode = fp['mode']
            if isinstance(mode, dict):
                if 'skip' in mode and fp['skip'] > 0:
                    fp['skip'] -= 1
                    return None
                if 'times' in mode:
                    if fp['times'] <= 0:
                        self.failpoints[fpname] = None
                        return None
                    fp['times'] -= 1
                    if fp['times'] <= 0:
                        self.failpoints[fpname] = None
            fp['count'] = fp.get('count', 0) + 1
            return data

    def check_failpoint(self, name, conn):
        """Returns None or the failCommand data that fires for this command."""
        def applies(data):
            if name not in data.get('failCommands', []):
                return False
            return data.get('appName') is None or data['appName'] == conn.app_name
        return self._fire_failpoint('failCommand', applies)

    def cmd_configureFailPoint(self, db, cmd, conn):
        if db != 'admin':
            raise CmdError(13, 'configureFailPoint may only be run against the admin database.')
        name = cmd['configureFailPoint']
        if name not in self.FAILPOINTS:
            raise CmdError(2, 'Unknown fail point: %s (mock server supports %s)' % (name, ', '.join(self.FAILPOINTS)))
        mode = cmd.get('mode')
        data = cmd.get('data', {}) or {}
        with self.fp_lock:
            cur = self.failpoints.get(name)
            old = cur['count'] if cur else 0
            if mode == 'off':
                self.failpoints[name] = None
            elif mode == 'alwaysOn':
                self.failpoints[name] = {'mode': mode, 'data': data}
            elif isinstance(mode, dict) and ('times' in mode or 'skip' in mode):
                fp = {'mode': mode, 'data': data}
                if 'times' in mode:
                    fp['times'] = int(mode['times'])
                if 'skip' in mode:
                    fp['skip'] = int(mode['skip'])
                self.failpoints[name] = fp
            else:
                raise CmdError(9, 'unrecognized failpoint mode: %r' % (mode,))
        return OrderedDict(count=old)

    # ---------------- dispatch -----------------
    def handle(self, request, conn):
        """Returns (reply_doc or None, hangup: bool)."""
        cmd = request.doc
        db = request.namespace
        self.log_command(cmd)
        if not cmd:
            return CmdError(9, 'empty command').doc(), False
        name = next(iter(cmd))
        lname = name.lower()
        fp = None
        if name != 'configureFailPoint':
            fp = self.check_failpoint(name, conn)
        self._see_cluster_time(cmd)
        if fp:
            if fp.get('blockConnection'):
                time.sleep(float(fp.get('blockTimeMS', 0)) / 1000.0)
            if fp.get('closeConnection'):
                return None, True
            if 'errorCode' in fp:
                code = int(fp['errorCode'])
                d = OrderedDict(ok=0.0, errmsg="Failing command via 'failCommand' failpoint",
                                code=code, codeName=CODE_NAMES.get(code, 'Location%d' % code))
                return self._finish_reply(d, lname, cmd, fp), False
        try:
            reply = self.dispatch(db, name, lname, cmd, conn, request)
            if fp and 'writeConcernError' in fp:
                reply['writeConcernError'] = fp['writeConcernError']
        except CmdError as exc:
            reply = exc.doc()
        except pm_errors.OperationFailure as exc:
            code = exc.code or 2
            reply = CmdError(code, str(exc)).doc()
        except NotImplementedError as exc:
            reply = CmdError(238, 'mock server (mongomock) does not implement this: %s' % exc).doc()
        except Exception as exc:
            if self.opts.verbose:
                traceback.print_exc()
            reply = CmdError(1, '%s: %s' % (type(exc).__name__, exc)).doc()
        finally:
            if self.journal is not None and self.journal_pending:
                with self.lock:
                    self.j_flush()
        if 'ok' not in reply:
            reply['ok'] = 1.0
        return self._finish_reply(reply, lname, cmd, fp), False

    def _finish_reply(self, reply, lname, cmd, fp):
        """Error labels (as MongoDB 4.4+ computes them) and, in replica-set
        mode, $clusterTime / operationTime."""
        if fp and 'errorLabels' in fp and (reply.get('ok') == 0 or 'writeConcernError' in reply):
            # failCommand's errorLabels replace the server's own labels.
            labels = list(fp['errorLabels'])
        else:
            labels = list(reply.get('errorLabels') or [])
            retryable_write = (lname in RETRYABLE_WRITE_CMDS and 'txnNumber' in cmd
                               and 'autocommit' not in cmd)
            codes = []
            if reply.get('ok') == 0:
                codes.append(reply.get('code'))
            wce = reply.get('writeConcernError')
            if isinstance(wce, dict):
                codes.append(wce.get('code'))
            if retryable_write and any(c in RETRYABLE_WRITE_CODES for c in codes) \
                    and 'RetryableWriteError' not in labels:
                labels.append('RetryableWriteError')
        reply.pop('errorLabels', None)
        if labels:
            reply['errorLabels'] = labels
        if self.opts.replset:
            ct = self.cluster_time()
            reply['$clusterTime'] = OrderedDict(
                clusterTime=ct, signature=OrderedDict(hash=Binary(b'\0' * 20, 0), keyId=Int64(0)))
            reply['operationTime'] = reply.pop('operationTime', None) or ct
        return reply

    # ---------------- logical clock -----------------
    def tick(self):
        """A new cluster time (Timestamp) for one write."""
        with self.ct_lock:
            now = int(time.time())
            if now > self.ct_secs:
                self.ct_secs, self.ct_inc = now, 1
            else:
                self.ct_inc += 1
            return Timestamp(self.ct_secs, self.ct_inc)

    def cluster_time(self):
        with self.ct_lock:
            return Timestamp(self.ct_secs, self.ct_inc)

    def _see_cluster_time(self, cmd):
        # Like mongod: a higher $clusterTime gossiped by a client advances the clock.
        ct = cmd.get('$clusterTime') if self.opts.replset else None
        t = ct.get('clusterTime') if isinstance(ct, dict) else None
        if isinstance(t, Timestamp):
            with self.ct_lock:
                if (t.time, t.inc) > (self.ct_secs, self.ct_inc):
                    self.ct_secs, self.ct_inc = t.time, t.inc

    READ_CMDS = {'find', 'aggregate', 'count', 'distinct', 'listcollections',
                 'listindexes', 'dbstats', 'collstats'}
    WRITE_CMDS = {'insert', 'update', 'delete', 'findandmodify', 'createindexes',
                  'dropindexes', 'collmod', 'create', 'drop', 'dropdatabase'}

    def dispatch(self, db, name, lname, cmd, conn, request):
        if 'startTransaction' in cmd or 'autocommit' in cmd:
            if not self.opts.replset:
                raise CmdError(20, 'Transaction numbers are only allowed on a replica set member or mongos')
            raise CmdError(238, 'mock server does not support transactions')
        if 'txnNumber' in cmd and not self.opts.replset:
            raise CmdError(20, 'Transaction numbers are only allowed on a replica set member or mongos')
        if lname in ('ismaster', 'hello'):
            return self.cmd_hello(cmd, conn, lname == 'hello')
        if name == 'sleep':
            ms = cmd.get('millis')
            if ms is None:
                ms = float(cmd.get('secs', 0)) * 1000
            time.sleep(float(ms) / 1000.0)
            return OrderedDict()
        if name == 'configureFailPoint':
            return self.cmd_configureFailPoint(db, cmd, conn)
        if name == 'mockSetRole':
            if db != 'admin':
                raise CmdError(13, 'mockSetRole may only be run against the admin database.')
            if cmd['mockSetRole'] not in ('primary', 'secondary'):
                raise CmdError(2, 'mockSetRole must be "primary" or "secondary"')
            self._set_role(cmd['mockSetRole'])
            return OrderedDict(role=self.role)
        if name == 'replSetStepDown':
            return self.cmd_replsetstepdown(db, cmd)
        if self.role == 'secondary':
            if lname in self.WRITE_CMDS or (lname == 'aggregate' and any(
                    '$out' in s or '$merge' in s for s in cmd.get('pipeline', []))):
                raise CmdError(10107, 'not primary')
            if lname in self.READ_CMDS:
                rp = cmd.get('$readPreference')
                ok = (rp is not None and rp.get('mode', 'primary') != 'primary') or \
                    (isinstance(request, Command) and request.slave_ok)
                if not ok:
                    raise CmdError(13435, 'not master and slaveOk=false')
        for opt in ('let', 'min', 'max', 'returnKey', 'showRecordId', 'oplogReplay', 'runtimeConstants'):
            if opt in cmd and lname in ('find', 'aggregate', 'update', 'delete', 'findandmodify'):
                raise CmdError(238, "mock server does not support the '%s' option of %s" % (opt, name))
        handler = self.HANDLERS.get(lname) if name in _REAL_NAMES else None
        if handler is None:
            raise CmdError(59, "no such command: '%s'" % name)
        if lname == 'getmore':
            return self.cmd_getmore_outer(db, cmd)   # takes the lock itself
        with self.lock:
            if 'txnNumber' in cmd and lname in RETRYABLE_WRITE_CMDS:
                return self._retryable_write(handler, db, cmd)
            return handler(self, db, cmd)

    def _retryable_write(self, handler, db, cmd):
        """A write with lsid + txnNumber: executed once; a retry of the same
        txnNumber gets the recorded reply (MongoDB's retryable writes)."""
        lsid = cmd.get('lsid') or {}
        key = _dict_key(lsid)
        txn = int(cmd['txnNumber'])
        rec = self.txn_records.get(key)
        if rec is not None:
            if txn < rec[0]:
                raise CmdError(225, 'Retryable write with txnNumber %d is prohibited on session %s because a '
                               'newer retryable write with txnNumber %d has already started on this session.'
                               % (txn, _fmt_val(lsid.get('id')), rec[0]))
            if txn == rec[0] and rec[1] is not None:
                return copy.deepcopy(rec[1])
        reply = handler(self, db, cmd)
        self.txn_records[key] = (txn, copy.deepcopy(reply))
        return reply

    def _set_role(self, role):
        if role == 'primary' and self.role != 'primary':
            self.election_id = self._new_election_id()
            self.term += 1
        self.role = role

    def cmd_replsetstepdown(self, db, cmd):
        if db != 'admin':
            raise CmdError(13, 'replSetStepDown may only be run against the admin database.')
        if not self.opts.replset:
            raise CmdError(76, 'not running with --replSet')
        secs = cmd.get('replSetStepDown')
        if not isinstance(secs, (int, float)) or isinstance(secs, bool):
            raise CmdError(14, "BSON field 'replSetStepDown.replSetStepDown' is the wrong type, expected a number")
        catch_up = cmd.get('secondaryCatchUpPeriodSecs', 10 if not cmd.get('force') else 0)
        if secs < catch_up:
            raise CmdError(2, 'stepdown period must be longer than secondaryCatchUpPeriodSecs')
        if self.role != 'primary':
            raise CmdError(10107, 'not primary so can\'t step down')
        self._set_role('secondary')
        me = self.me()
        hosts = self.opts.hosts.split(',') if self.opts.hosts else [me]
        if hosts == [me]:
            # The only member: it is elected again once the step-down period ends.
            if self.stepdown_timer is not None:
                self.stepdown_timer.cancel()
            self.stepdown_timer = threading.Timer(float(secs), self._set_role, args=('primary',))
            self.stepdown_timer.daemon = True
            self.stepdown_timer.start()
        return OrderedDict()

    @staticmethod
    def _new_election_id():
        # Monotonic across processes, so drivers never see a "stale" primary.
        return ObjectId('7fffffff%016x' % int(time.time() * 1000000))

    # ---------------- basic commands -----------------
    def cmd_hello(self, cmd, conn, is_hello):
        client = cmd.get('client')
        if isinstance(client, dict):
            app = client.get('application') or {}
            if isinstance(app, dict) and app.get('name'):
                conn.app_name = app['name']
        primary = self.role == 'primary'
        d = OrderedDict()
        if is_hello:
            d['isWritablePrimary'] = primary
        else:
            d['ismaster'] = primary
        d['helloOk'] = True
        if self.opts.replset:
            me = self.me()
            hosts = self.opts.hosts.split(',') if self.opts.hosts else [me]
            d['setName'] = self.opts.replset
            d['setVersion'] = 1
            d['hosts'] = hosts
            d['secondary'] = not primary
            if primary:
                d['primary'] = me
                d['electionId'] = self.election_id
            else:
                others = [h for h in hosts if h != me]
                if self.opts.primary_host:
                    d['primary'] = self.opts.primary_host
                elif others:
                    d['primary'] = others[0]
            d['me'] = me
            ct = self.cluster_time()
            now = datetime.datetime.utcnow()
            op = OrderedDict(ts=ct, t=Int64(self.term))
            d['lastWrite'] = OrderedDict(opTime=op, lastWriteDate=now, majorityOpTime=op,
                                         majorityWriteDate=now)
        d['maxBsonObjectSize'] = MAX_BSON
        d['maxMessageSizeBytes'] = 48000000
        d['maxWriteBatchSize'] = 100000
        d['localTime'] = datetime.datetime.utcnow()
        d['logicalSessionTimeoutMinutes'] = 30
        d['connectionId'] = conn.id
        d['minWireVersion'] = 0
        d['maxWireVersion'] = WIRE_VERSIONS[self.version[:2]]
        d['readOnly'] = False
        return d

    def cmd_ping(self, db, cmd):
        return OrderedDict()

    def cmd_buildinfo(self, db, cmd):
        return OrderedDict(version=self.opts.version, gitVersion='mock', modules=[],
                           allocator='system', javascriptEngine='none',
                           versionArray=list(self.version) + [0], bits=64, debug=False,
                           maxBsonObjectSize=MAX_BSON, storageEngines=['mongomock'])

    def cmd_endsessions(self, db, cmd):
        return OrderedDict()

    def cmd_serverstatus(self, db, cmd):
        up = time.time() - self.start_time
        with self.conn_lock:
            cur, tot = self.conn_current, self.conn_total
        return OrderedDict(host=socket.gethostname() + ':%d' % self.port,
                           version=self.opts.version, process='mongod', pid=Int64(os.getpid()),
                           uptime=float(int(up)), uptimeMillis=Int64(int(up * 1000)),
                           uptimeEstimate=Int64(int(up)),
                           localTime=datetime.datetime.utcnow(),
                           connections=OrderedDict(current=cur, available=838860 - cur,
                                                   totalCreated=tot))

    # ---------------- writes -----------------
    def _coll(self, db, cmd, name):
        coll = cmd[name]
        if not isinstance(coll, str) or not coll:
            raise CmdError(73, "Invalid namespace specified '%s.%s'" % (db, coll))
        return coll

    def _write_error(self, index, exc, ns, doc=None):
        if isinstance(exc, pm_errors.DuplicateKeyError):
            info = getattr(exc, 'mh_index', None)
            if info is None and doc is not None:
                info = ('_id_', [('_id', 1)], OrderedDict(_id=doc.get('_id')))
            if info is not None:
                we = dup_key_error(ns, *info)
            else:
                we = OrderedDict(code=11000, errmsg='E11000 duplicate key error collection: %s' % ns)
        elif isinstance(exc, pm_errors.OperationFailure):
            we = OrderedDict(code=exc.code or 2, errmsg=str(exc))
        elif isinstance(exc, NotImplementedError):
            we = OrderedDict(code=238, errmsg='mock server (mongomock) does not implement this: %s' % exc)
        elif isinstance(exc, CmdError):
            we = OrderedDict(code=exc.code, errmsg=exc.errmsg)
        elif isinstance(exc, (ValueError, TypeError, bson.errors.InvalidDocument)):
            we = OrderedDict(code=2, errmsg=str(exc))
        else:
            we = OrderedDict(code=1, errmsg='%s: %s' % (type(exc).__name__, exc))
        out = OrderedDict(index=index)
        out.update(we)
        return out

    def cmd_insert(self, db, cmd):
        cname = self._coll(db, cmd, 'insert')
        docs = cmd.get('documents', [])
        ordered = cmd.get('ordered', True)
        coll = self.client[db][cname]
        ns = '%s.%s' % (db, cname)
        ts = self.ts_colls.get((db, cname))
        n = 0
        errors = []
        inserted = []
        for i, doc in enumerate(docs):
            try:
                if '_id' not in doc:
                    doc = OrderedDict(itertools.chain([('_id', ObjectId())], doc.items()))
                if isinstance(doc.get('_id'), list):
                    raise pm_errors.OperationFailure("can't use an array for _id", 2)
                if ts is not None and not isinstance(doc.get(ts['timeseries']['timeField']), datetime.datetime):
                    raise pm_errors.OperationFailure(
                        "'%s' must be present and contain a valid BSON UTC datetime value"
                        % ts['timeseries']['timeField'], 2)
                coll.insert_one(doc)
                n += 1
                inserted.append(doc['_id'])
                self.ev_doc('insert', db, cname, doc['_id'])
            except Exception as exc:
                errors.append(self._write_error(i, exc, ns, doc))
                if ordered:
                    break
        self.j_docs(db, cname, inserted)
        r = OrderedDict(n=n)
        if errors:
            r['writeErrors'] = errors
        return r

    def cmd_delete(self, db, cmd):
        cname = self._coll(db, cmd, 'delete')
        self._ts_refuse_write(db, cname)
        ordered = cmd.get('ordered', True)
        coll = self.client[db][cname]
        ns = '%s.%s' % (db, cname)
        n = 0
        errors = []
        for i, st in enumerate(cmd.get('deletes', [])):
            try:
                q = self._ids_filter(db, cname, st.get('q', {}), 'delete')
                limit = st.get('limit', 0)
                if st.get('collation'):
                    raise NotImplementedError('collation')
                cur = coll.find(q, {'_id': 1})
                if limit:
                    cur = cur.limit(1)
                ids = [d['_id'] for d in cur]
                for _id in ids:
                    coll.delete_one({'_id': _id})
                    self.ev_doc('delete', db, cname, _id)
                n += len(ids)
                self.j_docs(db, cname, ids)
            except Exception as exc:
                errors.append(self._write_error(i, exc, ns))
                if ordered:
                    break
        r = OrderedDict(n=n)
        if errors:
            r['writeErrors'] = errors
        return r

    def _check_update_doc(self, u, multi):
        if isinstance(u, list):
            raise NotImplementedError('pipeline-style updates')
        if not isinstance(u, dict):
            raise pm_errors.OperationFailure('Update argument must be either an object or an array', 14)
        ops = [k.startswith('$') for k in u]
        if ops and any(ops) and not all(ops):
            raise pm_errors.OperationFailure(
                "Unknown modifier: %s. Expected a valid update modifier or pipeline-style update "
                "specified as an array" % [k for k in u if not k.startswith('$')][0], 9)
        is_replacement = not any(ops)
        if is_replacement and multi:
            raise pm_errors.OperationFailure('multi update is not supported for replacement-style update', 9)
        return is_replacement

    def _update_one_stmt(self, db, cname, coll, q, u, upsert, multi, array_filters=None):
        self._check_update_doc(u, multi)
        if array_filters:
            raise NotImplementedError('arrayFilters')
        cur = coll.find(q, {'_id': 1})
        if not multi:
            cur = cur.limit(1)
        ids = [d['_id'] for d in cur]
        before = self._snapshot(db, cname, ids)
        try:
            res = coll._update(q, u, upsert=upsert, multi=multi)
        finally:
            self.j_docs(db, cname, ids)
            replacement = not any(k.startswith('$') for k in u)
            for _id in ids:
                self.ev_doc('replace' if replacement else 'update', db, cname, _id,
                            before[_dict_key(_id)], u)
        if res.get('upserted') is not None:
            self.j_docs(db, cname, [res['upserted']])
            self.ev_doc('insert', db, cname, res['upserted'])
        return res

    def cmd_update(self, db, cmd):
        cname = self._coll(db, cmd, 'update')
        self._ts_refuse_write(db, cname)
        ordered = cmd.get('ordered', True)
        coll = self.client[db][cname]
        ns = '%s.%s' % (db, cname)
        n = n_mod = 0
        upserted = []
        errors = []
        for i, st in enumerate(cmd.get('updates', [])):
            try:
                if st.get('collation'):
                    raise NotImplementedError('collation')
                res = self._update_one_stmt(db, cname, coll, self._ids_filter(db, cname, st.get('q', {}), 'update'),
                                            st.get('u'),
                                            bool(st.get('upsert', False)), bool(st.get('multi', False)),
                                            st.get('arrayFilters'))
                if res.get('upserted') is not None:
                    n += 1
                    upserted.append(OrderedDict(index=i, _id=res['upserted']))
                else:
                    n += res.get('n', 0)
                    n_mod += res.get('nModified', 0)
            except Exception as exc:
                errors.append(self._write_error(i, exc, ns))
                if ordered:
                    break
        r = OrderedDict(n=n, nModified=n_mod)
        if upserted:
            r['upserted'] = upserted
        if errors:
            r['writeErrors'] = errors
        return r

    def _project_one(self, coll, _id, fields):
        docs = list(coll.find({'_id': _id}, fields or None).limit(1))
        return docs[0] if docs else None

    def cmd_findandmodify(self, db, cmd):
        cname = self._coll(db, cmd, next(iter(cmd)))
        self._ts_refuse_write(db, cname)
        coll = self.client[db][cname]
        ns = '%s.%s' % (db, cname)
        query = self._ids_filter(db, cname, cmd.get('query') or {}, 'findAndModify')
        sort = cmd.get('sort')
        fields = cmd.get('fields')
        remove = bool(cmd.get('remove', False))
        update = cmd.get('update')
        new = bool(cmd.get('new', False))
        upsert = bool(cmd.get('upsert', False))
        if cmd.get('arrayFilters') or cmd.get('collation'):
            raise NotImplementedError('arrayFilters/collation in findAndModify')
        if remove == (update is not None):
            raise CmdError(9, 'Either an update or remove=true must be specified')
        if remove and (new or upsert):
            raise CmdError(9, "Cannot specify both new=true and remove=true; 'remove' always returns the deleted document")
        cur = coll.find(query, {'_id': 1})
        if sort:
            cur = cur.sort(list(sort.items()))
        hit = list(cur.limit(1))
        lasterr = OrderedDict()
        value = None
        try:
            if remove:
                if hit:
                    _id = hit[0]['_id']
                    value = self._project_one(coll, _id, fields)
                    coll.delete_one({'_id': _id})
                    self.j_docs(db, cname, [_id])
                    self.ev_doc('delete', db, cname, _id)
                lasterr['n'] = 1 if hit else 0
            else:
                self._check_update_doc(update, False)
                if hit:
                    _id = hit[0]['_id']
                    before = self._project_one(coll, _id, fields)
                    full_before = self._snapshot(db, cname, [_id])[_dict_key(_id)]
                    try:
                        coll._update({'_id': _id}, update, upsert=False, multi=False)
                    finally:
                        self.j_docs(db, cname, [_id])
                        self.ev_doc('update' if any(k.startswith('$') for k in update) else 'replace',
                                    db, cname, _id, full_before, update)
                    value = self._project_one(coll, _id, fields) if new else before
                    lasterr['n'] = 1
                    lasterr['updatedExisting'] = True
                elif upsert:
                    res = coll._update(query, update, upsert=True, multi=False)
                    _id = res.get('upserted')
                    self.j_docs(db, cname, [_id])
                    self.ev_doc('insert', db, cname, _id)
                    value = self._project_one(coll, _id, fields) if new else None
                    lasterr['n'] = 1
                    lasterr['updatedExisting'] = False
                    lasterr['upserted'] = _id
                else:
                    lasterr['n'] = 0
                    lasterr['updatedExisting'] = False
        except pm_errors.DuplicateKeyError as exc:
            we = self._write_error(0, exc, ns)
            raise CmdError(11000, we['errmsg'], **{k: we[k] for k in ('keyPattern', 'keyValue') if k in we})
        return OrderedDict(lastErrorObject=lasterr, value=value)

    # ---------------- cursors -----------------
    def _make_cursor_reply(self, ns, docs, batch_size, single_batch=False, first=True):
        batch, rest = self._take_batch(docs, batch_size)
        cid = 0
        if rest and not single_batch:
            cid = random.randint(1, 2 ** 62)
            self.cursors[cid] = {'ns': ns, 'docs': rest, 'ts': time.time()}
        key = 'firstBatch' if first else 'nextBatch'
        return OrderedDict(cursor=OrderedDict([('id', Int64(cid)), ('ns', ns), (key, batch)]))

    def _take_batch(self, docs, batch_size):
        if batch_size is None or batch_size <= 0:
            batch_size = len(docs) if batch_size is not None else DEFAULT_BATCH
        batch = []
        size = 0
        limit_bytes = MAX_BSON - 16 * 1024
        i = 0
        for i, d in enumerate(docs):
            if len(batch) >= batch_size:
                break
            s = bson_size(d)
            if batch and size + s > limit_bytes:
                break
            batch.append(d)
            size += s
        else:
            i = len(docs)
        return batch, docs[len(batch):]

    def cmd_find(self, db, cmd):
        cname = self._coll(db, cmd, 'find')
        coll = self.client[db][cname]
        flt = cmd.get('filter') or {}
        flt, textq, near = self._prepare_filter(db, cname, flt)
        if cmd.get('collation'):
            raise NotImplementedError('collation')
        if cmd.get('tailable') or cmd.get('awaitData'):
            raise CmdError(2, 'error processing query: tailable cursor requested on non capped collection')
        limit = int(cmd.get('limit', 0) or 0)
        if limit < 0:
            raise CmdError(2, 'Limit value must be non-negative')
        skip = int(cmd.get('skip', 0) or 0)
        if skip < 0:
            raise CmdError(2, 'Skip value must be non-negative')
        bs = cmd.get('batchSize')
        if bs is not None and int(bs) < 0:
            raise CmdError(2, 'BatchSize value must be non-negative')
        proj, sort = cmd.get('projection') or None, cmd.get('sort')
        if textq is not None or near is not None or any(
                self._is_meta(v) for v in list((proj or {}).values()) + list((sort or {}).values())):
            items = self._special_docs(db, cname, flt, textq, near)
            if sort:
                items = self._sort_items(items, sort, textq)
            items = items[skip:]
            if limit:
                items = items[:limit]
            docs = self._project_items(coll, items, proj, textq)
        else:
            cur = coll.find(flt, proj)
            if sort:
                cur = cur.sort(list(sort.items()))
            if skip:
                cur = cur.skip(skip)
            if limit:
                cur = cur.limit(limit)
            docs = list(cur)
        bsz = DEFAULT_BATCH if bs is None else int(bs)
        if bs is not None and int(bs) == 0:
            bsz = 0
            return self._cursor_zero(db, cname, docs)
        if limit and limit < bsz:
            bsz = limit
        return self._make_cursor_reply('%s.%s' % (db, cname), docs, bsz,
                                       single_batch=bool(cmd.get('singleBatch')))

    def _cursor_zero(self, db, cname, docs):
        ns = '%s.%s' % (db, cname)
        cid = random.randint(1, 2 ** 62)
        self.cursors[cid] = {'ns': ns, 'docs': docs, 'ts': time.time()}
        return OrderedDict(cursor=OrderedDict([('id', Int64(cid)), ('ns', ns), ('firstBatch', [])]))

    def cmd_getmore_outer(self, db, cmd):
        """getMore: plain cursors under the store lock; change-stream cursors
        wait for new events (up to maxTimeMS, default 1 s) without it."""
        cid = cmd['getMore']
        if not isinstance(cid, int) or isinstance(cid, bool):
            raise CmdError(14, "BSON field 'getMore.getMore' is the wrong type '%s', expected type 'long'"
                           % type(cid).__name__)
        with self.lock:
            c = self.cursors.get(int(cid))
            if c is None or not c.get('cs'):
                return self.cmd_getmore(db, cmd)
            ns = '%s.%s' % (db, cmd.get('collection'))
            if c['ns'] != ns:
                raise CmdError(13, 'Requested getMore on namespace \'%s\', but cursor belongs to a '
                               'different namespace %s' % (ns, c['ns']))
            st = c['cs']
            if st['busy']:
                raise CmdError(143, 'cursor id %d is already in use' % cid)
            st['busy'] = True
        try:
            fp = self._fire_failpoint('failGetMoreAfterCursorCheckout', lambda data: True)
            if fp and 'errorCode' in fp:
                code = int(fp['errorCode'])
                labels = ['ResumableChangeStreamError'] if code in RESUMABLE_CHANGE_STREAM_CODES else []
                raise CmdError(code, "Failing command via 'failGetMoreAfterCursorCheckout' failpoint",
                               **({'errorLabels': labels} if labels else {}))
            bs = cmd.get('batchSize')
            wait_ms = cmd.get('maxTimeMS', 1000)
            deadline = time.time() + float(wait_ms) / 1000.0
            while True:
                with self.lock:
                    if st['killed']:
                        raise CmdError(237, 'cursor id %d was killed' % cid)
                    batch, pbrt = self.cs.scan(st, int(bs) if bs else None)
                    if batch or st['closed'] or time.time() >= deadline:
                        c['ts'] = time.time()
                        rid = int(cid)
                        if st['closed']:
                            self.cursors.pop(int(cid), None)
                            rid = 0
                        return OrderedDict(cursor=OrderedDict([
                            ('nextBatch', batch), ('postBatchResumeToken', pbrt),
                            ('id', Int64(rid)), ('ns', c['ns'])]))
                    pos = st['pos']
                self.cs.wait(pos, deadline)
        finally:
            st['busy'] = False

    def cmd_getmore(self, db, cmd):
        cid = cmd['getMore']
        cname = cmd.get('collection')
        c = self.cursors.pop(int(cid), None)
        if c is None:
            raise CmdError(43, 'cursor id %d not found' % cid)
        if c['ns'] != '%s.%s' % (db, cname):
            self.cursors[int(cid)] = c
            raise CmdError(13, 'Requested getMore on namespace \'%s.%s\', but cursor belongs to a different namespace %s'
                           % (db, cname, c['ns']))
        bs = cmd.get('batchSize')
        batch, rest = self._take_batch(c['docs'], int(bs) if bs else -1)
        if rest:
            c['docs'] = rest
            c['ts'] = time.time()
            self.cursors[int(cid)] = c
            rid = int(cid)
        else:
            rid = 0
        return OrderedDict(cursor=OrderedDict([('id', Int64(rid)), ('ns', c['ns']), ('nextBatch', batch)]))

    def cmd_killcursors(self, db, cmd):
        killed, notfound = [], []
        for cid in cmd.get('cursors', []):
            c = self.cursors.pop(int(cid), None)
            if c is not None:
                if c.get('cs'):
                    c['cs']['killed'] = True
                    self.cs.wake()
                killed.append(Int64(cid))
            else:
                notfound.append(Int64(cid))
        return OrderedDict(cursorsKilled=killed, cursorsNotFound=notfound,
                           cursorsAlive=[], cursorsUnknown=[])

    def _check_filter(self, flt):
        def walk(x):
            if isinstance(x, dict):
                for k, v in x.items():
                    if k == '$text':
                        raise CmdError(27, 'text index required for $text query')
                    if k in ('$near', '$nearSphere', '$geoNear'):
                        raise CmdError(291, self.NO_GEO_INDEX)
                    walk(v)
            elif isinstance(x, list):
                for v in x:
                    walk(v)
        walk(flt)

    # ---------------- count / distinct / aggregate -----------------
    def cmd_count(self, db, cmd):
        cname = self._coll(db, cmd, 'count')
        coll = self.client[db][cname]
        q = cmd.get('query') or {}
        q, textq, near = self._prepare_filter(db, cname, q, 'count')
        if textq is not None or near is not None:
            n = len(self._special_docs(db, cname, q, textq, near))
        else:
            n = len(list(coll.find(q, {'_id': 1})))
        skip = int(cmd.get('skip', 0) or 0)
        if skip < 0:
            raise CmdError(2, 'skip value is negative in count query')
        limit = abs(int(cmd.get('limit', 0) or 0))
        n = max(n - skip, 0)
        if limit:
            n = min(n, limit)
        return OrderedDict(n=n)

    def cmd_distinct(self, db, cmd):
        cname = self._coll(db, cmd, 'distinct')
        key = cmd.get('key')
        if not isinstance(key, str):
            raise CmdError(14, "BSON field 'distinct.key' is missing or not a string")
        q = cmd.get('query') or {}
        q = self._ids_filter(db, cname, q, 'distinct')
        return OrderedDict(values=self.client[db][cname].distinct(key, q))

    def _ids_filter(self, db, cname, q, where):
        """A filter without $text/$geoWithin (resolved to _ids); $near is refused."""
        q, textq, near = self._prepare_filter(db, cname, q, where)
        if near is not None:
            raise CmdError(238, 'mock server supports $near/$nearSphere only in find and count')
        if textq is not None:
            ids = [d['_id'] for d, _, _ in self._special_docs(db, cname, q, textq, None)]
            q = {'$and': [q, {'_id': {'$in': ids}}]} if q else {'_id': {'$in': ids}}
        return q

    KNOWN_STAGES = {'$addFields', '$bucket', '$bucketAuto', '$collStats', '$count', '$currentOp',
                    '$facet', '$geoNear', '$graphLookup', '$group', '$indexStats', '$limit',
                    '$listLocalSessions', '$listSessions', '$lookup', '$match', '$merge', '$out',
                    '$planCacheStats', '$project', '$redact', '$replaceRoot', '$replaceWith',
                    '$sample', '$set', '$skip', '$sort', '$sortByCount', '$unset', '$unwind',
                    '$changeStream', '$unionWith', '$search', '$documents', '$setWindowFields',
                    '$densify', '$fill'}

    def _rewrite_pipeline(self, pipeline):
        out = []
        for i, st in enumerate(pipeline):
            if not isinstance(st, dict) or len(st) != 1:
                raise CmdError(40323, 'A pipeline stage specification object must contain exactly one field.')
            op, arg = next(iter(st.items()))
            if op == '$unset':
                fields = [arg] if isinstance(arg, str) else list(arg)
                out.append({'$project': {f: 0 for f in fields}})
            elif op == '$replaceWith':
                out.append({'$replaceRoot': {'newRoot': arg}})
            elif op == '$sortByCount':
                out.append({'$group': {'_id': arg, 'count': {'$sum': 1}}})
                out.append({'$sort': {'count': -1}})
            elif op == '$changeStream':
                if not self.opts.replset:
                    raise CmdError(40573, 'The $changeStream stage is only supported on replica sets')
                raise CmdError(40602, '$changeStream is only valid as the first stage in a pipeline.')
            elif op == '$match':
                self._check_later_match(arg)
                out.append(st)
            elif op == '$geoNear':
                raise CmdError(40603, '$geoNear was not the first stage in the pipeline.')
            elif op in ('$project', '$addFields', '$set') and isinstance(arg, dict):
                out.append({op: self._meta_exprs(arg)})
            elif op == '$sort' and isinstance(arg, dict):
                out.append({'$sort': OrderedDict(
                    (TEXT_SCORE_FIELD, -1) if self._is_meta(v) and v.get('$meta') == 'textScore' else (k, v)
                    for k, v in arg.items())})
            elif op == '$facet':
                out.append({'$facet': {k: self._rewrite_pipeline(v) for k, v in arg.items()}})
            elif op in mongomock.aggregate._PIPELINE_HANDLERS and \
                    mongomock.aggregate._PIPELINE_HANDLERS[op] is not None:
                if op == '$out' and i != len(pipeline) - 1:
                    raise CmdError(40601, '$out can only be the final stage in the pipeline')
                out.append(st)
            elif op in self.KNOWN_STAGES:
                raise CmdError(40324, "Unrecognized pipeline stage name: '%s' "
                               "(valid in MongoDB but not supported by the mock server)" % op)
            else:
                raise CmdError(40324, "Unrecognized pipeline stage name: '%s'" % op)
        return out

    def _coll_stats_doc(self, db, cname):
        cstore = self.client._store[db][cname]
        docs = list(cstore._documents.values())
        size = sum(bson_size(d) for d in docs)
        nidx = (1 + len(cstore.indexes)) if cstore.is_created else 0
        idx_sizes = OrderedDict()
        if cstore.is_created:
            idx_sizes['_id_'] = 4096 + 16 * len(docs)
            for name in cstore.indexes:
                idx_sizes[name] = 4096 + 16 * len(docs)
        return dict(count=len(docs), size=size, avgObjSize=(size // len(docs)) if docs else 0,
                    nindexes=nidx, totalIndexSize=sum(idx_sizes.values()), indexSizes=idx_sizes,
                    storageSize=max(size, 4096) if cstore.is_created else 0)

    def cmd_aggregate(self, db, cmd):
        cname = cmd['aggregate']
        pipeline = cmd.get('pipeline')
        if not isinstance(pipeline, list):
            raise CmdError(14, "'pipeline' option must be specified as an array")
        if cmd.get('explain'):
            raise CmdError(238, 'mock server does not support explain')
        if 'cursor' not in cmd:
            raise CmdError(9, "The 'cursor' option is required, except for aggregate with the explain argument")
        if cmd.get('collation'):
            raise NotImplementedError('collation')
        if pipeline and isinstance(pipeline[0], dict) and '$changeStream' in pipeline[0]:
            if not self.opts.replset:
                raise CmdError(40573, 'The $changeStream stage is only supported on replica sets')
            if cname != 1 and not isinstance(cname, str):
                raise CmdError(73, 'Invalid namespace specified')
            return self.cs.open(db, cname, cmd, pipeline)
        if cname == 1 or not isinstance(cname, str):
            st = next(iter(pipeline[0])) if pipeline and isinstance(pipeline[0], dict) else None
            raise CmdError(40324 if st not in self.KNOWN_STAGES else 238,
                           "mock server does not support collection-less aggregate (stage %s)" % st)
        bs = (cmd.get('cursor') or {}).get('batchSize')
        ns = '%s.%s' % (db, cname)
        if pipeline and isinstance(pipeline[0], dict) and '$collStats' in pipeline[0]:
            if not self.coll_exists(db, cname):
                raise CmdError(26, 'Unable to retrieve storageStats in $collStats stage :: caused by :: '
                               'Collection [%s] not found.' % ns)
            opts = pipeline[0]['$collStats'] or {}
            d = OrderedDict(ns=ns, host='%s:%d' % (socket.gethostname(), self.port),
                            localTime=datetime.datetime.utcnow())
            st = self._coll_stats_doc(db, cname)
            if 'storageStats' in opts:
                d['storageStats'] = OrderedDict(
                    (k, st[k]) for k in ('size', 'count', 'avgObjSize', 'storageSize', 'nindexes',
                                         'totalIndexSize', 'indexSizes'))
            if 'count' in opts:
                d['count'] = st['count']
            rest = self._rewrite_pipeline(pipeline[1:])
            docs = [d]
            if rest:
                docs = list(mongomock.aggregate.process_pipeline(docs, self.client[db], rest, None))
            return self._make_cursor_reply(ns, docs, DEFAULT_BATCH if bs is None else int(bs))
        pre_docs = None
        if pipeline and isinstance(pipeline[0], dict) and len(pipeline[0]) == 1:
            op0, arg0 = next(iter(pipeline[0].items()))
            if op0 == '$geoNear':
                pre_docs = self._geo_near_stage(db, cname, arg0)
                pipeline = pipeline[1:]
            elif op0 == '$match' and isinstance(arg0, dict):
                m, textq, _ = self._prepare_filter(db, cname, arg0, 'aggregate')
                if textq is not None:
                    pre_docs = []
                    for d, sc, _ in self._special_docs(db, cname, m, textq, None):
                        d = copy.deepcopy(d)
                        d[TEXT_SCORE_FIELD] = sc
                        pre_docs.append(d)
                    pipeline = pipeline[1:]
                else:
                    pipeline = [{'$match': m}] + list(pipeline[1:])
        pipe = self._rewrite_pipeline(pipeline)
        if pre_docs is not None:
            docs = list(mongomock.aggregate.process_pipeline(pre_docs, self.client[db], pipe, None))
            for d in docs:
                if isinstance(d, dict):
                    d.pop(TEXT_SCORE_FIELD, None)
        else:
            if any(TEXT_SCORE_FIELD in json_util.dumps(st) for st in pipe):
                raise CmdError(40218, 'query requires text score metadata, but it is not available')
            docs = list(self.client[db][cname].aggregate(pipe))
        if not any('$replaceRoot' in st for st in pipe):
            # MongoDB keeps _id as the first field ($group, $project, ...).
            docs = [d if not isinstance(d, dict) or '_id' not in d or next(iter(d)) == '_id'
                    else OrderedDict(itertools.chain([('_id', d['_id'])],
                                                     ((k, v) for k, v in d.items() if k != '_id')))
                    for d in docs]
        if pipe and '$out' in pipe[-1]:
            target = pipe[-1]['$out']
            tdb, tcoll = (target.get('db', db), target['coll']) if isinstance(target, dict) else (db, target)
            self.j(op='drop', db=tdb, coll=tcoll)
            self.j(op='create', db=tdb, coll=tcoll)
            self.j_docs(tdb, tcoll, [d['_id'] for d in self.client._store[tdb][tcoll]._documents.values()])
            docs = []
        if bs is not None and int(bs) == 0:
            return self._cursor_zero(db, cname, docs)
        return self._make_cursor_reply(ns, docs, DEFAULT_BATCH if bs is None else int(bs))

    # ---------------- indexes -----------------
    SUPPORTED_INDEX_OPTS = {'key', 'name', 'unique', 'sparse', 'expireAfterSeconds',
                            'partialFilterExpression', 'background', 'v', 'ns', 'weights',
                            'default_language', 'language_override', 'textIndexVersion',
                            '2dsphereIndexVersion', 'bits', 'min', 'max'}

    def _index_public(self, name, spec):
        if any(v == 'text' for _, v in spec['key']):
            key = []
            for k, v in spec['key']:
                if v == 'text':
                    if ('_fts', 'text') not in key:
                        key += [('_fts', 'text'), ('_ftsx', 1)]
                else:
                    key.append((k, v))
            d = OrderedDict(v=2, key=SON(key), name=name)
        else:
            d = OrderedDict(v=2, key=SON((k, v) for k, v in spec['key']), name=name)
        for opt in ('unique', 'sparse', 'expireAfterSeconds', 'partialFilterExpression', 'weights',
                    'default_language', 'language_override', 'textIndexVersion', '2dsphereIndexVersion',
                    'bits', 'min', 'max'):
            if opt in spec:
                d[opt] = SON(sorted(spec[opt].items())) if opt == 'weights' else spec[opt]
        return d

    def _text_index_spec(self, ix, spec):
        keys = list(ix['key'].items())
        kinds = [v == 'text' for _, v in keys]
        first = kinds.index(True)
        last = len(kinds) - 1 - kinds[::-1].index(True)
        if not all(kinds[first:last + 1]):
            raise CmdError(17389, "'text' fields in index must all be adjacent")
        weights = OrderedDict((k, 1) for k, v in keys if v == 'text')
        w = ix.get('weights')
        if isinstance(w, dict):
            for k, x in w.items():
                if not isinstance(x, (int, float)) or isinstance(x, bool):
                    raise CmdError(17283, 'weight for text index needs numeric type')
                if not 0 < int(x) < 100000:
                    raise CmdError(16674, 'score for word too high')
                weights[k] = int(x)
        elif w == '$**':
            weights = OrderedDict([('$**', 1)])
        elif w is not None:
            raise CmdError(17284, "text index option 'weights' must be an object")
        lang = ix.get('default_language', 'english')
        if not isinstance(lang, str) or lang.lower() not in msearch.LANGUAGES:
            raise CmdError(17263, 'default_language is not valid')
        lo = ix.get('language_override', 'language')
        if not isinstance(lo, str) or not lo or lo.startswith('$') or '.' in lo:
            raise CmdError(17136, 'language_override is not valid')
        tv = ix.get('textIndexVersion', 3)
        if tv not in (1, 2, 3):
            raise CmdError(17364, 'Currently only textIndexVersion 1, 2 and 3 are supported, not %s' % tv)
        spec.update(weights=weights, default_language=lang, language_override=lo, textIndexVersion=int(tv))

    def cmd_createindexes(self, db, cmd):
        cname = self._coll(db, cmd, 'createIndexes')
        indexes = cmd.get('indexes')
        if not isinstance(indexes, list) or not indexes:
            raise CmdError(2, 'Must specify at least one index to create')
        ns = '%s.%s' % (db, cname)
        cstore = self.client._store[db][cname]
        created_auto = not cstore.is_created
        before = (1 + len(cstore.indexes)) if cstore.is_created else 0
        planned = []
        for ix in indexes:
            if not isinstance(ix, dict) or 'key' not in ix or not isinstance(ix['key'], dict) or not ix['key']:
                raise CmdError(9, "Error in specification %s :: caused by :: The 'key' field is a required "
                               "property of an index specification" % _fmt_val(ix))
            if 'name' not in ix:
                raise CmdError(9, "Error in specification %s :: caused by :: The 'name' field is a required "
                               "property of an index specification" % _fmt_val(ix))
            bad = set(ix) - self.SUPPORTED_INDEX_OPTS
            if bad:
                raise CmdError(67, 'mock server does not support index option(s): %s' % ', '.join(sorted(bad)))
            for k, v in ix['key'].items():
                if isinstance(v, str):
                    if v == 'geoHaystack':
                        raise CmdError(67, "mock server does not support 'geoHaystack' indexes")
                    if v not in ('hashed', 'text', '2d', '2dsphere'):
                        raise CmdError(67, "Unknown index plugin '%s'" % v)
                elif not isinstance(v, (int, float)) or v == 0:
                    raise CmdError(67, 'Values in the index key pattern can only be of numeric type '
                                   "or 'hashed' / special index strings")
            spec = {'key': [(k, v) for k, v in ix['key'].items()]}
            for opt in ('unique', 'sparse'):
                if ix.get(opt):
                    spec[opt] = True
            if 'expireAfterSeconds' in ix:
                eas = ix['expireAfterSeconds']
                if not isinstance(eas, (int, float)) or isinstance(eas, bool) or eas < 0:
                    raise CmdError(67, 'TTL index \'expireAfterSeconds\' option must be numeric and >= 0')
                spec['expireAfterSeconds'] = eas
            if 'partialFilterExpression' in ix:
                spec['partialFilterExpression'] = ix['partialFilterExpression']
            kinds = {v for v in ix['key'].values() if isinstance(v, str)}
            if 'text' in kinds:
                self._text_index_spec(ix, spec)
            if '2dsphere' in kinds:
                spec['2dsphereIndexVersion'] = 3
                for d in list(cstore._documents.values()):
                    err = _geo_key_error(spec, d)
                    if err:
                        raise CmdError(16755, err)
            if '2d' in kinds:
                for opt in ('bits', 'min', 'max'):
                    if opt in ix:
                        spec[opt] = ix[opt]
                for d in list(cstore._documents.values()):
                    err = _geo_key_error(spec, d)
                    if err:
                        raise CmdError(16804 if 'legacy' in err else 13027, err)
            name = ix['name']
            if name == '_id_' or list(ix['key'].items()) == [('_id', 1)]:
                if spec['key'] == [('_id', 1)] and name == '_id_' and len(spec) == 1:
                    continue
                raise CmdError(85 if spec['key'] == [('_id', 1)] else 86,
                               'Index with name: %s conflicts with the _id index' % name)
            existing = dict(cstore.indexes)
            for pname, pspec in planned:
                existing[pname] = pspec
            texts = [(n, sp) for n, sp in existing.items() if any(v == 'text' for _, v in sp['key'])]
            if 'text' in kinds and texts:
                if texts[0][0] == name and texts[0][1] == spec:
                    continue
                raise CmdError(85, 'An equivalent index already exists with a different name and options. '
                               'Requested index: %s, existing index: %s'
                               % (_fmt_val(dict(self._index_public(name, spec))),
                                  _fmt_val(dict(self._index_public(*texts[0])))))
            if name in existing:
                ex = existing[name]
                if list(map(tuple, ex['key'])) != spec['key']:
                    raise CmdError(86, 'An existing index has the same name as the requested index. '
                                   'When index names are not specified, they are auto generated and can '
                                   'cause conflicts. Please refer to our documentation. Requested index: %s, '
                                   'existing index: %s' % (_fmt_val(dict(self._index_public(name, spec))),
                                                            _fmt_val(dict(self._index_public(name, ex)))))
                if ex != spec:
                    raise CmdError(85, 'An equivalent index already exists with the same name but different '
                                   'options. Requested index: %s, existing index: %s'
                                   % (_fmt_val(dict(self._index_public(name, spec))),
                                      _fmt_val(dict(self._index_public(name, ex)))))
                continue
            same_key = [n for n, s in existing.items() if list(map(tuple, s['key'])) == spec['key']
                        and s.get('partialFilterExpression') == spec.get('partialFilterExpression')]
            if same_key:
                ex = existing[same_key[0]]
                if ex != spec:
                    raise CmdError(85, 'An equivalent index already exists with a different name and options. '
                                   'Requested index: %s, existing index: %s'
                                   % (_fmt_val(dict(self._index_public(name, spec))),
                                      _fmt_val(dict(self._index_public(same_key[0], ex)))))
                raise CmdError(85, 'Index with name: %s already exists with a different name' % same_key[0])
            if spec.get('unique'):
                self._check_unique_build(ns, cstore, name, spec)
            planned.append((name, spec))
        if created_auto:
            cstore.create()
            self.j(op='create', db=db, coll=cname)
        for name, spec in planned:
            cstore.create_index(name, spec)
        after = 1 + len(cstore.indexes)
        if planned:
            self.j_indexes(db, cname)
        r = OrderedDict(createdCollectionAutomatically=created_auto,
                        numIndexesBefore=before if not created_auto else 1, numIndexesAfter=after)
        if not planned:
            r['note'] = 'all indexes already exist'
        return r

    def _check_unique_build(self, ns, cstore, name, spec):
        seen = set()
        pfe = spec.get('partialFilterExpression')
        for doc in list(cstore._documents.values()):
            if pfe is not None and not mm_filtering.filter_applies(pfe, doc):
                continue
            vals = OrderedDict()
            for k, _ in spec['key']:
                try:
                    vals[k] = mm_helpers.get_value_by_dot(doc, k)
                except KeyError:
                    vals[k] = None
            if spec.get('sparse') and all(v is None for v in vals.values()):
                continue
            key = _dict_key(list(vals.values()))
            if key in seen:
                we = dup_key_error(ns, name, spec['key'], vals)
                raise CmdError(11000, 'Index build failed: %s' % we['errmsg'],
                               keyPattern=we['keyPattern'], keyValue=we['keyValue'])
            seen.add(key)

    def cmd_listindexes(self, db, cmd):
        cname = self._coll(db, cmd, 'listIndexes')
        if not self.coll_exists(db, cname):
            raise CmdError(26, 'ns does not exist: %s.%s' % (db, cname))
        cstore = self.client._store[db][cname]
        docs = [OrderedDict([('v', 2), ('key', SON([('_id', 1)])), ('name', '_id_')])]
        docs += [self._index_public(n, s) for n, s in cstore.indexes.items()]
        bs = (cmd.get('cursor') or {}).get('batchSize')
        return self._make_cursor_reply('%s.%s' % (db, cname), docs, DEFAULT_BATCH if bs is None else int(bs))

    def _find_index(self, cstore, ref):
        if isinstance(ref, str):
            return ref if ref in cstore.indexes or ref == '_id_' else None
        if isinstance(ref, dict):
            if list(ref.items()) == [('_id', 1)]:
                return '_id_'
            for n, s in cstore.indexes.items():
                if list(map(tuple, s['key'])) == list(ref.items()):
                    return n
        return None

    def cmd_dropindexes(self, db, cmd):
        cname = self._coll(db, cmd, next(iter(cmd)))
        if not self.coll_exists(db, cname):
            raise CmdError(26, 'ns not found %s.%s' % (db, cname))
        cstore = self.client._store[db][cname]
        was = 1 + len(cstore.indexes)
        ref = cmd.get('index')
        if ref == '*':
            cstore.indexes = {}
            cstore._ttl_indexes = {}
        else:
            refs = ref if isinstance(ref, list) else [ref]
            names = []
            for r in refs:
                name = self._find_index(cstore, r)
                if name is None:
                    if isinstance(r, dict):
                        raise CmdError(27, "can't find index with key: %s" % _fmt_val(r))
                    raise CmdError(27, 'index not found with name [%s]' % r)
                if name == '_id_':
                    raise CmdError(72, 'cannot drop _id index')
                names.append(name)
            for name in names:
                cstore.indexes.pop(name, None)
                cstore._ttl_indexes.pop(name, None)
        self.j_indexes(db, cname)
        return OrderedDict(nIndexesWas=was)

    def cmd_collmod(self, db, cmd):
        cname = self._coll(db, cmd, 'collMod')
        if not self.coll_exists(db, cname):
            raise CmdError(26, 'ns does not exist')
        bad = set(cmd) - GENERIC_FIELDS - {'collMod', 'index'}
        if bad:
            raise CmdError(72, 'mock server does not support collMod option(s): %s' % ', '.join(sorted(bad)))
        r = OrderedDict()
        if 'index' in cmd:
            spec = cmd['index']
            cstore = self.client._store[db][cname]
            if 'name' in spec:
                name = spec['name'] if spec['name'] in cstore.indexes else None
            elif 'keyPattern' in spec:
                name = self._find_index(cstore, spec['keyPattern'])
            else:
                raise CmdError(72, 'must specify either index name or key pattern')
            if name is None or name == '_id_':
                raise CmdError(27, 'cannot find index %s for ns %s.%s' % (_fmt_val(spec.get('name', spec.get('keyPattern'))), db, cname))
            ix = cstore.indexes[name]
            if 'expireAfterSeconds' in spec:
                if 'expireAfterSeconds' not in ix:
                    raise CmdError(72, 'no expireAfterSeconds field to update')
                new = spec['expireAfterSeconds']
                if not isinstance(new, (int, float)) or isinstance(new, bool):
                    raise CmdError(72, 'expireAfterSeconds must be a number')
                old = ix['expireAfterSeconds']
                ix['expireAfterSeconds'] = new
                cstore._ttl_indexes[name] = ix
                r['expireAfterSeconds_old'] = old
                r['expireAfterSeconds_new'] = new
                self.j_indexes(db, cname)
            elif set(spec) - {'name', 'keyPattern'}:
                raise CmdError(72, 'mock server only supports changing expireAfterSeconds via collMod')
        return r

    # ---------------- collections / databases -----------------
    def cmd_listcollections(self, db, cmd):
        flt = cmd.get('filter') or {}
        name_only = bool(cmd.get('nameOnly'))
        dstore = self.client._store[db]
        out = []
        for name in sorted(dstore.list_created_collection_names()):
            ts = self.ts_colls.get((db, name))
            d = OrderedDict(name=name, type='timeseries' if ts else 'collection')
            if not name_only:
                d['options'] = copy.deepcopy(ts) if ts else OrderedDict()
                if ts:
                    d['info'] = OrderedDict(readOnly=False)
                else:
                    d['info'] = OrderedDict(readOnly=False, uuid=self.coll_uuid(db, name))
                    d['idIndex'] = OrderedDict([('v', 2), ('key', SON([('_id', 1)])), ('name', '_id_')])
            if flt and not mm_filtering.filter_applies(flt, d):
                continue
            out.append(d)
        bs = (cmd.get('cursor') or {}).get('batchSize')
        return self._make_cursor_reply('%s.$cmd.listCollections' % db, out,
                                       DEFAULT_BATCH if bs is None else int(bs))

    TS_SPANS = {'seconds': 3600, 'minutes': 86400, 'hours': 2592000}

    def _ts_options(self, cmd):
        """Validated time-series options of a create command (MongoDB 5.0's rules), or None."""
        if self.version < (5, 0):
            for f in ('timeseries', 'expireAfterSeconds'):
                if f in cmd:
                    raise CmdError(40415, "BSON field 'create.%s' is an unknown field." % f)
            return None
        ts = cmd.get('timeseries')
        if 'expireAfterSeconds' in cmd and ts is None:
            raise CmdError(72, "'expireAfterSeconds' option is only supported on time-series collections")
        if ts is None:
            return None
        if not isinstance(ts, dict):
            raise CmdError(14, "BSON field 'create.timeseries' is the wrong type '%s', expected type 'object'"
                           % _bson_type_name(ts))
        for k in ts:
            if k not in ('timeField', 'metaField', 'granularity'):
                raise CmdError(40415, "BSON field 'create.timeseries.%s' is an unknown field." % k)
        if 'timeField' not in ts:
            raise CmdError(40414, "BSON field 'create.timeseries.timeField' is missing but a required field")
        for f in ('timeField', 'metaField', 'granularity'):
            if f in ts and not isinstance(ts[f], str):
                raise CmdError(14, "BSON field 'create.timeseries.%s' is the wrong type '%s', expected type "
                               "'string'" % (f, _bson_type_name(ts[f])))
        gran = ts.get('granularity', 'seconds')
        if gran not in self.TS_SPANS:
            raise CmdError(2, "Enumeration value '%s' for field 'create.timeseries.granularity' is not a valid "
                           "value." % gran)
        tf, mf = ts['timeField'], ts.get('metaField')
        if '.' in tf:
            raise CmdError(72, "The 'timeField' option cannot contain a '.'")
        if mf is not None:
            if mf == tf:
                raise CmdError(72, "The 'metaField' option cannot be the same as the 'timeField' option")
            if mf == '_id':
                raise CmdError(72, "The 'metaField' option cannot be '_id'")
            if '.' in mf:
                raise CmdError(72, "The 'metaField' option cannot contain a '.'")
        opts = OrderedDict()
        t = OrderedDict(timeField=tf)
        if mf is not None:
            t['metaField'] = mf
        t['granularity'] = gran
        t['bucketMaxSpanSeconds'] = self.TS_SPANS[gran]
        opts['timeseries'] = t
        if 'expireAfterSeconds' in cmd:
            eas = cmd['expireAfterSeconds']
            if not isinstance(eas, (int, float)) or isinstance(eas, bool):
                raise CmdError(72, "TTL index 'expireAfterSeconds' option must be numeric, but received a type "
                               "of '%s'" % _bson_type_name(eas))
            if eas < 0:
                raise CmdError(72, "TTL index 'expireAfterSeconds' option cannot be less than 0")
            opts['expireAfterSeconds'] = Int64(int(eas))
        return opts

    def cmd_create(self, db, cmd):
        cname = self._coll(db, cmd, 'create')
        ts = self._ts_options(cmd)
        bad = set(cmd) - GENERIC_FIELDS - {'create'} - ({'timeseries', 'expireAfterSeconds'} if ts else set())
        if bad:
            raise CmdError(72, 'mock server cannot honour create option(s): %s' % ', '.join(sorted(bad)))
        if self.coll_exists(db, cname):
            raise CmdError(48, 'Collection already exists. NS: %s.%s' % (db, cname))
        self.client._store[db][cname].create()
        if ts:
            self.ts_colls[(db, cname)] = ts
            self.j(op='create', db=db, coll=cname, ts_options=ts)
        else:
            self.j(op='create', db=db, coll=cname)
        self.tick()
        return OrderedDict()

    def _ts_refuse_write(self, db, cname):
        if (db, cname) in self.ts_colls:
            raise CmdError(166, 'Namespace %s.%s is a view, not a collection' % (db, cname))

    def cmd_drop(self, db, cmd):
        cname = self._coll(db, cmd, 'drop')
        if not self.coll_exists(db, cname):
            raise CmdError(26, 'ns not found')
        was = 1 + len(self.client._store[db][cname].indexes)
        self.client[db].drop_collection(cname)
        self.coll_uuids.pop((db, cname), None)
        self.ts_colls.pop((db, cname), None)
        self._kill_ns_cursors('%s.%s' % (db, cname))
        self.j(op='drop', db=db, coll=cname)
        self.ev('drop', db, cname)
        return OrderedDict(nIndexesWas=was, ns='%s.%s' % (db, cname))

    def cmd_renamecollection(self, db, cmd):
        if db != 'admin':
            raise CmdError(13, 'renameCollection may only be run against the admin database.')
        src, dst = cmd.get('renameCollection'), cmd.get('to')
        if not isinstance(src, str) or not isinstance(dst, str) or '.' not in src or '.' not in dst:
            raise CmdError(73, 'Invalid source or target namespace')
        sdb, scoll = src.split('.', 1)
        tdb, tcoll = dst.split('.', 1)
        if sdb != tdb:
            raise CmdError(238, 'mock server does not support renameCollection across databases')
        if not self.coll_exists(sdb, scoll):
            raise CmdError(26, 'Source collection %s does not exist' % src)
        if src == dst:
            raise CmdError(20, "Can't rename a collection to itself")
        if (sdb, scoll) in self.ts_colls:
            raise CmdError(72, 'Renaming a time-series collection is not allowed')
        if self.coll_exists(tdb, tcoll):
            if not cmd.get('dropTarget'):
                raise CmdError(48, 'target namespace exists')
            self.client[tdb].drop_collection(tcoll)
            self.coll_uuids.pop((tdb, tcoll), None)
            self._kill_ns_cursors(dst)
            self.j(op='drop', db=tdb, coll=tcoll)
        dstore = self.client._store[sdb]
        dstore._collections[tcoll] = dstore._collections.pop(scoll)
        dstore._collections[tcoll].name = tcoll
        if (sdb, scoll) in self.coll_uuids:
            self.coll_uuids[(tdb, tcoll)] = self.coll_uuids.pop((sdb, scoll))
        self._kill_ns_cursors(src)
        self.j(op='rename', db=sdb, coll=scoll, to=tcoll)
        self.ev('rename', sdb, scoll, to=(tdb, tcoll))
        return OrderedDict()

    def _kill_ns_cursors(self, ns):
        # Change-stream cursors outlive the collection (they get drop/invalidate).
        for cid in [c for c, v in self.cursors.items() if v['ns'] == ns and not v.get('cs')]:
            del self.cursors[cid]

    def cmd_dropdatabase(self, db, cmd):
        if db in self.client._store._databases:
            names = sorted(self.client._store[db].list_created_collection_names())
            for cname in list(self.client._store[db]._collections):
                self._kill_ns_cursors('%s.%s' % (db, cname))
            self.client.drop_database(db)
            self.j(op='dropdb', db=db)
            for cname in names:
                self.ev('drop', db, cname)
            if names:
                self.ev('dropDatabase', db, None)
        for k in [k for k in self.coll_uuids if k[0] == db]:
            del self.coll_uuids[k]
        for k in [k for k in self.ts_colls if k[0] == db]:
            del self.ts_colls[k]
        return OrderedDict(dropped=db)

    def _db_size(self, name):
        dstore = self.client._store[name]
        return sum(bson_size(d) for c in dstore.list_created_collection_names()
                   for d in list(dstore[c]._documents.values()))

    def cmd_listdatabases(self, db, cmd):
        if db != 'admin':
            raise CmdError(13, 'listDatabases may only be run against the admin database.')
        name_only = bool(cmd.get('nameOnly'))
        flt = cmd.get('filter') or {}
        out = []
        total = 0
        for name in sorted(self.client._store.list_created_database_names()):
            size = self._db_size(name)
            d = OrderedDict(name=name)
            if not name_only:
                d['sizeOnDisk'] = float(max(size, 4096))
                d['empty'] = False
            if flt and not mm_filtering.filter_applies(flt, d):
                continue
            total += max(size, 4096)
            out.append(d)
        r = OrderedDict(databases=out)
        if not name_only:
            r['totalSize'] = float(total)
        return r

    def cmd_dbstats(self, db, cmd):
        dstore = self.client._store[db]
        names = dstore.list_created_collection_names()
        objects = data = indexes = index_size = 0
        for c in names:
            st = self._coll_stats_doc(db, c)
            objects += st['count']
            data += st['size']
            indexes += st['nindexes']
            index_size += st['totalIndexSize']
        return OrderedDict(db=db, collections=len(names), views=0, objects=objects,
                           avgObjSize=float(data) / objects if objects else 0.0,
                           dataSize=float(data), storageSize=float(max(data, 4096) if names else 0),
                           indexes=indexes, indexSize=float(index_size),
                           totalSize=float((max(data, 4096) if names else 0) + index_size),
                           scaleFactor=1.0, fsUsedSize=0.0, fsTotalSize=0.0)

    def cmd_collstats(self, db, cmd):
        cname = self._coll(db, cmd, 'collStats')
        if not self.coll_exists(db, cname):
            raise CmdError(26, 'Collection [%s.%s] not found.' % (db, cname))
        st = self._coll_stats_doc(db, cname)
        return OrderedDict(ns='%s.%s' % (db, cname), size=st['size'], count=st['count'],
                           avgObjSize=st['avgObjSize'], storageSize=st['storageSize'],
                           capped=False, nindexes=st['nindexes'],
                           totalIndexSize=st['totalIndexSize'], indexSizes=st['indexSizes'],
                           scaleFactor=1)

    # ---------------- TTL monitor -----------------
    def ttl_pass(self):
        now = datetime.datetime.utcnow()
        with self.lock:
            for (dbname, cname), ts in list(self.ts_colls.items()):
                eas = ts.get('expireAfterSeconds')
                if eas is None:
                    continue
                cstore = self.client._store[dbname][cname]
                tf = ts['timeseries']['timeField']
                for key, doc in list(cstore._documents.items()):
                    val = doc.get(tf)
                    if isinstance(val, datetime.datetime):
                        if val.tzinfo is not None:
                            val = val.astimezone(datetime.timezone.utc).replace(tzinfo=None)
                        if val + datetime.timedelta(seconds=float(eas)) < now:
                            cstore._documents.pop(key, None)
                            self.j(op='del', db=dbname, coll=cname, id=doc['_id'])
            for dbname, dstore in list(self.client._store._databases.items()):
                for cname, cstore in list(dstore._collections.items()):
                    for name, ix in list(cstore.indexes.items()):
                        eas = ix.get('expireAfterSeconds')
                        if eas is None or len(ix['key']) != 1:
                            continue
                        field = ix['key'][0][0]
                        pfe = ix.get('partialFilterExpression')
                        expired = []
                        for key, doc in list(cstore._documents.items()):
                            try:
                                val = mm_helpers.get_value_by_dot(doc, field)
                            except KeyError:
                                continue
                            if isinstance(val, list):
                                dates = [v for v in val if isinstance(v, datetime.datetime)]
                                if not dates:
                                    continue
                                val = min(dates)
                            if not isinstance(val, datetime.datetime):
                                continue
                            if val.tzinfo is not None:
                                val = val.astimezone(datetime.timezone.utc).replace(tzinfo=None)
                            if val + datetime.timedelta(seconds=float(eas)) >= now:
                                continue
                            if pfe is not None and not mm_filtering.filter_applies(pfe, doc):
                                continue
                            expired.append((key, doc['_id']))
                        for key, _id in expired:
                            cstore._documents.pop(key, None)
                            self.j(op='del', db=dbname, coll=cname, id=_id)
                            self.ev_doc('delete', dbname, cname, _id)
            self.j_flush()
            # Reap idle cursors (MongoDB: 10 minutes).
            cutoff = time.time() - 600
            for cid in [c for c, v in self.cursors.items() if v['ts'] < cutoff]:
                del self.cursors[cid]

    HANDLERS = {}


Engine.HANDLERS = {
    'ping': Engine.cmd_ping, 'buildinfo': Engine.cmd_buildinfo,
    'endsessions': Engine.cmd_endsessions, 'serverstatus': Engine.cmd_serverstatus,
    'insert': Engine.cmd_insert, 'update': Engine.cmd_update, 'delete': Engine.cmd_delete,
    'findandmodify': Engine.cmd_findandmodify,
    'find': Engine.cmd_find, 'getmore': Engine.cmd_getmore, 'killcursors': Engine.cmd_killcursors,
    'count': Engine.cmd_count, 'distinct': Engine.cmd_distinct, 'aggregate': Engine.cmd_aggregate,
    'createindexes': Engine.cmd_createindexes, 'listindexes': Engine.cmd_listindexes,
    'dropindexes': Engine.cmd_dropindexes, 'deleteindexes': Engine.cmd_dropindexes,
    'collmod': Engine.cmd_collmod,
    'listcollections': Engine.cmd_listcollections, 'create': Engine.cmd_create,
    'drop': Engine.cmd_drop, 'dropdatabase': Engine.cmd_dropdatabase,
    'listdatabases': Engine.cmd_listdatabases, 'dbstats': Engine.cmd_dbstats,
    'collstats': Engine.cmd_collstats, 'renamecollection': Engine.cmd_renamecollection,
}
# MongoDB command names are case-sensitive except for a few legacy aliases;
# we look names up lower-cased but only accept the real spellings.
_REAL_NAMES = {'ping', 'buildInfo', 'buildinfo', 'endSessions', 'serverStatus', 'insert',
               'update', 'delete', 'findAndModify', 'findandmodify', 'find', 'getMore',
               'killCursors', 'count', 'distinct', 'aggregate', 'createIndexes', 'listIndexes',
               'dropIndexes', 'deleteIndexes', 'collMod', 'listCollections', 'create', 'drop',
               'dropDatabase', 'listDatabases', 'dbStats', 'dbstats', 'collStats', 'collstats',
               'renameCollection'}


# ---------------------------------------------------------------------------
# Network layer (mockupdb)
# ---------------------------------------------------------------------------

class Server(MockupDB):
    """mockupdb server with our own accept/serve loops: no global lock, no
    per-request repr logging, TLS with user-supplied certificates."""

    def __init__(self, engine, opts):
        MockupDB.__init__(self, port=opts.port, verbose=opts.verbose, request_timeout=int(1e6))
        self._address = (opts.host, opts.port)
        self.engine = engine
        self.opts = opts
        self.tls_ctx = None
        if opts.tls_cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(opts.tls_cert, opts.tls_key or None)
            if opts.tls_ca:
                ctx.load_verify_locations(opts.tls_ca)
                ctx.verify_mode = ssl.CERT_REQUIRED
            self.tls_ctx = ctx

    def run(self):
        self._listening_sock, self._address = bind_tcp_socket(self._address)
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._accept_thread.start()
        return self.port

    def stop(self):
        self._stopped = True
        try:
            self._listening_sock.close()
        except OSError:
            pass
        for sock in list(self._server_socks):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                sock.close()
            except OSError:
                pass

    def _accept_loop(self):
        self._listening_sock.settimeout(0.5)
        while not self._stopped:
            try:
                client, addr = self._listening_sock.accept()
            except socket.timeout:
                continue
            except OSError:
                if self._stopped:
                    break
                time.sleep(0.05)
                continue
            client.settimeout(None)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            t = threading.Thread(target=self._server_loop, args=(client, addr), daemon=True)
            t.start()

    def _server_loop(self, client, addr):
        eng = self.engine
        if self.tls_ctx is not None:
            try:
                client.settimeout(10)
                client = self.tls_ctx.wrap_socket(client, server_side=True)
                client.settimeout(None)
            except (OSError, ssl.SSLError) as exc:
                if self.opts.verbose:
                    print('TLS handshake with %s failed: %s' % (addr, exc), file=sys.stderr)
                try:
                    client.close()
                except OSError:
                    pass
                return
        self._server_socks[client] = None
        conn = Connection(client, addr)
        with eng.conn_lock:
            eng.conn_current += 1
            eng.conn_total += 1
        try:
            while not self._stopped:
                try:
                    request = mock_server_receive_request(client, self)
                except (OSError, ssl.SSLError, EOFError):
                    break
                except Exception as exc:
                    if self.opts.verbose:
                        print('bad message from %s: %r' % (addr, exc), file=sys.stderr)
                    break
                if not self._serve_one(request, conn, client):
                    break
        finally:
            with eng.conn_lock:
                eng.conn_current -= 1
            try:
                client.close()
            except OSError:
                pass

    def _serve_one(self, request, conn, client):
        eng = self.engine
        if isinstance(request, (OpMsg, Command)):
            try:
                reply, hangup = eng.handle(request, conn)
            except Exception as exc:  # should not happen; never crash
                traceback.print_exc()
                reply, hangup = CmdError(1, 'InternalError: %r' % exc).doc(), False
            if self.opts.verbose:
                print('%d\t%s -> %s' % (conn.id, _short(request.doc), _short(reply)), file=sys.stderr)
            if hangup:
                try:
                    client.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return False
            if isinstance(request, OpMsg):
                if request.flags & OP_MSG_MORE_TO_COME:
                    return True
                try:
                    data = OpMsgReply(reply).reply_bytes(request)
                except Exception as exc:
                    data = OpMsgReply(CmdError(1, 'cannot encode reply: %s' % exc).doc()).reply_bytes(request)
            else:
                try:
                    data = OpReply(reply).reply_bytes(request)
                except Exception as exc:
                    data = OpReply(CmdError(1, 'cannot encode reply: %s' % exc).doc()).reply_bytes(request)
            client.sendall(data)
            return True
        # Legacy opcodes: MongoDB 4.4 still has them but libmongoc never uses
        # them against wire version 9.  Refuse honestly.
        if isinstance(request, (OpQuery, OpGetMore)):
            client.sendall(OpReply({'$err': 'mock server does not support legacy OP_QUERY/OP_GET_MORE',
                                    'code': 238}, flags=2).reply_bytes(request))
        return True


def _short(doc, n=300):
    try:
        s = json_util.dumps(doc)
    except Exception:
        s = repr(doc)
    return s if len(s) <= n else s[:n] + '...'


def main(argv=None):
    p = argparse.ArgumentParser(description='MongoDB-wire-compatible mock server for tests')
    p.add_argument('--host', default='127.0.0.1')
    p.add_argument('--port', type=int, default=0, help='0 = pick a free port')
    p.add_argument('--port-file', help='write the bound port here once listening')
    p.add_argument('--verbose', action='store_true')
    p.add_argument('--command-log', help='append each received command as canonical extended JSON')
    p.add_argument('--dbpath', help='journal writes here and replay them on start')
    p.add_argument('--ttl-interval', type=float, default=1.0)
    p.add_argument('--tls-cert')
    p.add_argument('--tls-key')
    p.add_argument('--tls-ca', help='require client certificates signed by this CA')
    p.add_argument('--replset', help='replica set name (default: standalone)')
    p.add_argument('--hosts', help='comma separated host:port list of the set members')
    p.add_argument('--me', help='this member\'s host:port (default HOST:PORT)')
    p.add_argument('--primary-host', help='host:port reported as primary while this member is secondary')
    p.add_argument('--version', default='4.4.0',
                   help='server version to present: 4.4.x (default, wire version 9) or 5.0.x '
                        '(wire version 13; time-series collections)')
    p.add_argument('--oplog-size', type=int, default=100000,
                   help='change events kept for resuming change streams (replica-set mode)')
    g = p.add_mutually_exclusive_group()
    g.add_argument('--primary', action='store_true', help='start as primary (default)')
    g.add_argument('--secondary', action='store_true', help='start as secondary')
    opts = p.parse_args(argv)
    try:
        ver = tuple(int(x) for x in opts.version.split('.'))
        if len(ver) != 3 or ver[:2] not in WIRE_VERSIONS:
            raise ValueError
    except ValueError:
        p.error('--version must be 4.4.x or 5.0.x, not %r' % opts.version)

    engine = Engine(opts)
    server = Server(engine, opts)
    port = server.run()
    engine.port = port
    if opts.port_file:
        tmp = opts.port_file + '.tmp'
        with open(tmp, 'w') as f:
            f.write('%d\n' % port)
        os.rename(tmp, opts.port_file)
    if opts.verbose:
        print('mock_server listening on %s:%d' % (opts.host, port), file=sys.stderr)

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    while not stop.wait(opts.ttl_interval):
        try:
            engine.ttl_pass()
        except Exception:
            traceback.print_exc()
    server.stop()
    with engine.lock:
        engine.j_flush()
        if engine.journal is not None:
            engine.journal.close()
    if engine.cmd_log is not None:
        engine.cmd_log.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
