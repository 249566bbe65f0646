"""Document commands for tests/mock_server.py: insert, update, delete,
findAndModify, count and distinct on mongomock collections, with MongoDB's
write errors (duplicate keys, bad update documents) and filter checks.
"""

import datetime
import itertools
from collections import OrderedDict

import bson
from bson.objectid import ObjectId
import pymongo.errors as pm_errors

from mockserver_common import CmdError, _dict_key, dup_key_error


class CrudMixin(object):
    """Engine methods for the write commands, count and distinct (mock_server.Engine)."""

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

    # ---------------- count / distinct -----------------
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
