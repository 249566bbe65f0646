"""The catalog for tests/mock_server.py: indexes (createIndexes with unique,
partial, TTL, text and geo indexes; listIndexes; dropIndexes), collections
(create with time-series options on 5.0, collMod, listCollections, drop,
renameCollection), databases (dropDatabase, listDatabases, dbStats,
collStats) and the TTL monitor that deletes expired documents.
"""

import copy
import datetime
import time
from collections import OrderedDict

from bson.int64 import Int64
from bson.son import SON
from mongomock import helpers as mm_helpers
from mongomock import filtering as mm_filtering

import mockserver_search as msearch
from mockserver_common import (CmdError, DEFAULT_BATCH, GENERIC_FIELDS,
                               _bson_type_name, _dict_key, _fmt_val,
                               _geo_key_error, bson_size, dup_key_error)


class CatalogMixin(object):
    """Engine methods for indexes, collections, databases and the TTL monitor (mock_server.Engine)."""

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
