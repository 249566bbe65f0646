#!/usr/bin/python3
"""MongoDB-wire-compatible test server for mongo_helper's test-suite.

Wire protocol handling comes from mockupdb (OP_QUERY legacy handshake, OP_MSG
incl. document sequences); storage, query, update and aggregation come from
mongomock.  The server presents itself as a MongoDB 4.4 standalone (or, with
--replset, as a replica-set member).  It is ONLY meant for tests.

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
    16755: 'Location16755', 40414: 'Location40414', 17262: 'Location17262',
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


def _mh_ensure_uniques(self, new_data):
    """Replacement for mongomock's unique check that records which index."""
    for name, index in list(self._store.indexes.items()):
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


class Engine(object):
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
        elif op == 'drop':
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
        n = 0
        errors = []
        inserted = []
        for i, doc in enumerate(docs):
            try:
                if '_id' not in doc:
                    doc = OrderedDict(itertools.chain([('_id', ObjectId())], doc.items()))
                if isinstance(doc.get('_id'), list):
                    raise pm_errors.OperationFailure("can't use an array for _id", 2)
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
        ordered = cmd.get('ordered', True)
        coll = self.client[db][cname]
        ns = '%s.%s' % (db, cname)
        n = 0
        errors = []
        for i, st in enumerate(cmd.get('deletes', [])):
            try:
                q = st.get('q', {})
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
                res = self._update_one_stmt(db, cname, coll, st.get('q', {}), st.get('u'),
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
        coll = self.client[db][cname]
        ns = '%s.%s' % (db, cname)
        query = cmd.get('query') or {}
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
        self._check_filter(flt)
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
        cur = coll.find(flt, cmd.get('projection') or None)
        if cmd.get('sort'):
            cur = cur.sort(list(cmd['sort'].items()))
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
                        raise CmdError(291, 'error processing query: planner returned error :: caused by :: '
                                       'unable to find index for $geoNear query')
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
        self._check_filter(q)
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
        self._check_filter(q)
        return OrderedDict(values=self.client[db][cname].distinct(key, q))

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
                self._check_filter(arg)
                out.append(st)
            elif op == '$geoNear':
                raise CmdError(291, 'error processing query: planner returned error :: caused by :: '
                               'unable to find index for $geoNear query')
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
        pipe = self._rewrite_pipeline(pipeline)
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
                            'partialFilterExpression', 'background', 'v', 'ns'}

    def _index_public(self, name, spec):
        d = OrderedDict(v=2, key=SON((k, v) for k, v in spec['key']), name=name)
        for opt in ('unique', 'sparse', 'expireAfterSeconds', 'partialFilterExpression'):
            if opt in spec:
                d[opt] = spec[opt]
        return d

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
                    if v in ('text', '2d', '2dsphere', 'geoHaystack'):
                        raise CmdError(67, "mock server does not support '%s' indexes" % v)
                    if v != 'hashed':
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
            name = ix['name']
            if name == '_id_' or list(ix['key'].items()) == [('_id', 1)]:
                if spec['key'] == [('_id', 1)] and name == '_id_' and len(spec) == 1:
                    continue
                raise CmdError(85 if spec['key'] == [('_id', 1)] else 86,
                               'Index with name: %s conflicts with the _id index' % name)
            existing = dict(cstore.indexes)
            for pname, pspec in planned:
                existing[pname] = pspec
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
            d = OrderedDict(name=name, type='collection')
            if not name_only:
                d['options'] = OrderedDict()
                d['info'] = OrderedDict(readOnly=False, uuid=self.coll_uuid(db, name))
                d['idIndex'] = OrderedDict([('v', 2), ('key', SON([('_id', 1)])), ('name', '_id_')])
            if flt and not mm_filtering.filter_applies(flt, d):
                continue
            out.append(d)
        bs = (cmd.get('cursor') or {}).get('batchSize')
        return self._make_cursor_reply('%s.$cmd.listCollections' % db, out,
                                       DEFAULT_BATCH if bs is None else int(bs))

    def cmd_create(self, db, cmd):
        cname = self._coll(db, cmd, 'create')
        bad = set(cmd) - GENERIC_FIELDS - {'create'}
        if bad:
            raise CmdError(72, 'mock server cannot honour create option(s): %s' % ', '.join(sorted(bad)))
        if self.coll_exists(db, cname):
            raise CmdError(48, 'Collection already exists. NS: %s.%s' % (db, cname))
        self.client._store[db][cname].create()
        self.j(op='create', db=db, coll=cname)
        return OrderedDict()

    def cmd_drop(self, db, cmd):
        cname = self._coll(db, cmd, 'drop')
        if not self.coll_exists(db, cname):
            raise CmdError(26, 'ns not found')
        was = 1 + len(self.client._store[db][cname].indexes)
        self.client[db].drop_collection(cname)
        self.coll_uuids.pop((db, cname), None)
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
