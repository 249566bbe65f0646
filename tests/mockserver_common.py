"""Shared by tests/mock_server.py and its mockserver_*.py modules: MongoDB's
error codes and names, the limits and command sets the server reports,
CmdError, the value formatting MongoDB uses in its messages, and the
adjustments made to mongomock (expired documents stay until the TTL monitor
deletes them, unique and geo index checks that name the index, a fast path
for {_id: <scalar>}).  Also hands CmdError and helpers to
mockserver_changestreams.py and mockserver_search.py, which cannot import
mock_server.py (it may run as __main__).
"""

from collections import OrderedDict

import bson
from bson import json_util
from bson.objectid import ObjectId
from bson.son import SON
from mongomock import helpers as mm_helpers
from mongomock import store as mm_store
from mongomock import filtering as mm_filtering
from mongomock import collection as mm_collection
import pymongo.errors as pm_errors

import mockserver_changestreams as mcs
import mockserver_search as msearch

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
