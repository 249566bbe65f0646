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

Modules (all in tests/, next to this entry point, which the Makefile,
tests/with_server.sh and bench start by its path)
  mock_server.py               the command line, the network layer (mockupdb's
                               wire protocol with our own accept/serve loops,
                               TLS), the handshake (hello), dispatch, error
                               labels, the logical clock, retryable writes,
                               the journal (--dbpath) and change events
  mockserver_common.py         error codes, CmdError, limits, value formatting,
                               the mongomock adjustments
  mockserver_crud.py           insert, update, delete, findAndModify, count,
                               distinct
  mockserver_cursors.py        find, aggregate, getMore, killCursors
  mockserver_catalog.py        indexes, collections, databases, TTL monitor
  mockserver_faults.py         configureFailPoint, mockSetRole, replSetStepDown
  mockserver_changestreams.py  change streams
  mockserver_search.py         text search and geospatial queries
"""

import argparse
import copy
import datetime
import itertools
import os
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
from bson.son import SON
from bson.timestamp import Timestamp
from mockupdb import (OpMsg, OpQuery, Command, OpGetMore, OpMsgReply, OpReply,
                      MockupDB, bind_tcp_socket, mock_server_receive_request)
import mongomock
import pymongo.errors as pm_errors

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mockserver_changestreams as mcs  # noqa: E402
import mockserver_search as msearch  # noqa: E402
from mockserver_common import (  # noqa: E402
    CODE_NAMES, CmdError, MAX_BSON, OP_MSG_MORE_TO_COME, RETRYABLE_WRITE_CMDS,
    RETRYABLE_WRITE_CODES, WIRE_VERSIONS, _dict_key, _doc_key, _fmt_val)
from mockserver_faults import FaultsMixin  # noqa: E402
from mockserver_crud import CrudMixin  # noqa: E402
from mockserver_cursors import CursorsMixin  # noqa: E402
from mockserver_catalog import CatalogMixin  # noqa: E402


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


class Engine(FaultsMixin, CrudMixin, CursorsMixin, CatalogMixin, msearch.SearchMixin):
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
