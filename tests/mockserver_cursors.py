"""Cursors for tests/mock_server.py: find, aggregate (pipeline rewriting for
what mongomock lacks, $out/$merge, change-stream aggregates handed to
mockserver_changestreams.py), getMore and killCursors, with batches bounded
by batchSize and MongoDB's 16 MiB reply size.
"""

import copy
import datetime
import itertools
import random
import socket
import time
from collections import OrderedDict

from bson import json_util
from bson.int64 import Int64
import mongomock

from mockserver_common import (CmdError, DEFAULT_BATCH, MAX_BSON,
                               RESUMABLE_CHANGE_STREAM_CODES, TEXT_SCORE_FIELD,
                               bson_size)


class CursorsMixin(object):
    """Engine methods for find, aggregate and their cursors (mock_server.Engine)."""

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

    # ---------------- aggregate -----------------
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
