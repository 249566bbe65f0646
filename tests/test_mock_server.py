#!/usr/bin/python3
"""Self-test for tests/mock_server.py (run with Debian's /usr/bin/python3).

Starts its own mock servers (ignores MONGO_TEST_URI) and checks each feature
by reading data back through pymongo.
"""

import atexit
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

import pymongo
from bson.int64 import Int64
from bson.timestamp import Timestamp
from pymongo.errors import (BulkWriteError, DuplicateKeyError, OperationFailure,
                            AutoReconnect, NotMasterError, ServerSelectionTimeoutError)

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, 'mock_server.py')
PY = '/usr/bin/python3'


_ALL_PROCS = []


@atexit.register
def _kill_leftovers():
    for p in _ALL_PROCS:
        if p.poll() is None:
            p.kill()
            p.wait()


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


class MockProc(object):
    def __init__(self, *args, port=0):
        self.tmp = tempfile.mkdtemp(prefix='mh_mock_test.')
        self.args = list(args)
        self.log = os.path.join(self.tmp, 'log')
        self.port = port
        self.start()

    def start(self):
        pf = os.path.join(self.tmp, 'port')
        if os.path.exists(pf):
            os.unlink(pf)
        self.proc = subprocess.Popen(
            [PY, SCRIPT, '--port', str(self.port), '--port-file', pf] + self.args,
            stdout=open(self.log, 'a'), stderr=subprocess.STDOUT)
        _ALL_PROCS.append(self.proc)
        deadline = time.time() + 15
        while not os.path.exists(pf):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError('mock server failed to start:\n' + open(self.log).read())
            time.sleep(0.02)
        self.port = int(open(pf).read())

    def uri(self, extra=''):
        return 'mongodb://127.0.0.1:%d/mh_test%s' % (self.port, extra)

    def client(self, **kw):
        kw.setdefault('serverSelectionTimeoutMS', 5000)
        return pymongo.MongoClient(self.uri(), **kw)

    def kill(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(10)

    def close(self):
        self.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


class Base(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cmdlog = tempfile.mktemp(prefix='mh_cmdlog.')
        cls.srv = MockProc('--command-log', cls.cmdlog, '--ttl-interval', '0.2')
        cls.client = cls.srv.client()
        cls.db = cls.client.mh_test

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.srv.close()
        if os.path.exists(cls.cmdlog):
            os.unlink(cls.cmdlog)

    def setUp(self):
        self.client.drop_database('mh_test')

    def err(self, fn, *a, **kw):
        with self.assertRaises(OperationFailure) as cm:
            fn(*a, **kw)
        return cm.exception.details


class TestBasics(Base):
    def test_hello_and_buildinfo(self):
        h = self.db.command('hello')
        self.assertIs(h['isWritablePrimary'], True)
        self.assertIs(h['helloOk'], True)
        self.assertEqual(h['maxWireVersion'], 9)
        self.assertEqual(h['maxBsonObjectSize'], 16777216)
        self.assertEqual(h['maxWriteBatchSize'], 100000)
        self.assertEqual(h['logicalSessionTimeoutMinutes'], 30)
        self.assertNotIn('setName', h)
        im = self.db.command('isMaster')
        self.assertIs(im['ismaster'], True)
        bi = self.db.command('buildInfo')
        self.assertEqual(bi['version'], '4.4.0')
        self.assertEqual(bi['versionArray'], [4, 4, 0, 0])
        self.assertEqual(self.db.command('ping')['ok'], 1.0)

    def test_unknown_command(self):
        d = self.err(self.db.command, 'frobnicate')
        self.assertEqual((d['code'], d['codeName']), (59, 'CommandNotFound'))
        self.assertEqual(d['errmsg'], "no such command: 'frobnicate'")
        self.assertEqual(d['ok'], 0.0)

    def test_server_status(self):
        s = self.client.admin.command('serverStatus')
        self.assertEqual(s['process'], 'mongod')
        self.assertEqual(s['version'], '4.4.0')
        self.assertGreaterEqual(s['connections']['current'], 1)
        self.assertIn('uptimeMillis', s)

    def test_command_log(self):
        self.db.logged.insert_one({'_id': 'marker-xyz', 'v': Int64(5)})
        lines = [json.loads(l) for l in open(self.cmdlog)]
        ins = [l for l in lines if l.get('insert') == 'logged']
        self.assertTrue(ins)
        self.assertEqual(ins[-1]['documents'], [{'_id': 'marker-xyz', 'v': {'$numberLong': '5'}}])
        self.assertNotIn('lsid', ins[-1])


class TestCrud(Base):
    def test_insert_ordered_unordered(self):
        c = self.db.c
        c.create_index('name', unique=True, name='name_1')
        with self.assertRaises(BulkWriteError) as cm:
            c.insert_many([{'name': 'a'}, {'name': 'a'}, {'name': 'b'}], ordered=True)
        we = cm.exception.details['writeErrors']
        self.assertEqual(len(we), 1)
        self.assertEqual(we[0]['index'], 1)
        self.assertEqual(we[0]['code'], 11000)
        self.assertEqual(we[0]['keyPattern'], {'name': 1})
        self.assertEqual(we[0]['keyValue'], {'name': 'a'})
        self.assertEqual(we[0]['errmsg'],
                         'E11000 duplicate key error collection: mh_test.c index: name_1 dup key: { name: "a" }')
        self.assertEqual(sorted(d['name'] for d in c.find()), ['a'])
        with self.assertRaises(BulkWriteError) as cm:
            c.insert_many([{'name': 'a'}, {'name': 'c'}, {'_id': 1, 'name': 'd'}, {'_id': 1}], ordered=False)
        self.assertEqual([e['index'] for e in cm.exception.details['writeErrors']], [0, 3])
        self.assertEqual(cm.exception.details['writeErrors'][1]['keyPattern'], {'_id': 1})
        self.assertEqual(sorted(d['name'] for d in c.find()), ['a', 'c', 'd'])

    def test_find_cursor_getmore_kill(self):
        self.db.c.insert_many([{'_id': i} for i in range(250)])
        r = self.db.command('find', 'c', batchSize=2, sort={'_id': -1})
        self.assertEqual([d['_id'] for d in r['cursor']['firstBatch']], [249, 248])
        cid = r['cursor']['id']
        self.assertIsInstance(cid, Int64)
        self.assertNotEqual(cid, 0)
        r = self.db.command('getMore', cid, collection='c', batchSize=3)
        self.assertEqual([d['_id'] for d in r['cursor']['nextBatch']], [247, 246, 245])
        r = self.db.command('getMore', cid, collection='c')
        self.assertEqual(len(r['cursor']['nextBatch']), 245)
        self.assertEqual(r['cursor']['id'], 0)
        d = self.err(self.db.command, 'getMore', cid, collection='c')
        self.assertEqual((d['code'], d['codeName']), (43, 'CursorNotFound'))
        # default first batch 101
        r = self.db.command('find', 'c')
        self.assertEqual(len(r['cursor']['firstBatch']), 101)
        k = self.db.command('killCursors', 'c', cursors=[r['cursor']['id']])
        self.assertEqual(k['cursorsKilled'], [r['cursor']['id']])
        # filter/projection/skip/limit through the driver
        docs = list(self.db.c.find({'_id': {'$gte': 10}}, {'_id': 1}).sort('_id', 1).skip(5).limit(7).batch_size(2))
        self.assertEqual([d['_id'] for d in docs], list(range(15, 22)))
        r = self.db.command('find', 'c', batchSize=2, singleBatch=True)
        self.assertEqual(r['cursor']['id'], 0)

    def test_find_16mb_batch_cap(self):
        big = 'x' * (5 * 1024 * 1024)
        self.db.big.insert_many([{'_id': i, 's': big} for i in range(5)])
        r = self.db.command('find', 'big')
        self.assertEqual(len(r['cursor']['firstBatch']), 3)
        self.assertNotEqual(r['cursor']['id'], 0)
        self.assertEqual(len(list(self.db.big.find())), 5)

    def test_update_delete(self):
        c = self.db.c
        c.insert_many([{'_id': i, 'x': i % 2} for i in range(6)])
        r = self.db.command('update', 'c', updates=[
            {'q': {'x': 1}, 'u': {'$inc': {'y': 10}}, 'multi': True},
            {'q': {'_id': 0}, 'u': {'_id': 0, 'replaced': True}},
            {'q': {'_id': 'new'}, 'u': {'$set': {'z': 1}}, 'upsert': True},
        ])
        self.assertEqual(r['n'], 5)
        self.assertEqual(r['nModified'], 4)
        self.assertEqual(r['upserted'], [{'index': 2, '_id': 'new'}])
        self.assertEqual(c.find_one({'_id': 0}), {'_id': 0, 'replaced': True})
        self.assertEqual(sorted(d['y'] for d in c.find({'y': {'$exists': True}})), [10, 10, 10])
        self.assertEqual(c.find_one({'_id': 'new'}), {'_id': 'new', 'z': 1})
        # unique violation in update
        c.create_index('k', unique=True, sparse=True, name='k_1')
        c.update_one({'_id': 1}, {'$set': {'k': 1}})
        with self.assertRaises(DuplicateKeyError):
            c.update_one({'_id': 2}, {'$set': {'k': 1}})
        self.assertNotIn('k', c.find_one({'_id': 2}))
        # delete limit
        r = self.db.command('delete', 'c', deletes=[{'q': {'x': 0}, 'limit': 1}])
        self.assertEqual(r['n'], 1)
        self.assertEqual(c.delete_many({'x': 0}).deleted_count, 1)
        self.assertEqual(c.count_documents({'x': 0}), 0)

    def test_find_and_modify(self):
        c = self.db.c
        c.insert_many([{'_id': 1, 'n': 5}, {'_id': 2, 'n': 3}])
        r = self.db.command('findAndModify', 'c', query={}, sort={'n': 1},
                            update={'$inc': {'n': 1}}, new=True)
        self.assertEqual(r['value'], {'_id': 2, 'n': 4})
        self.assertEqual(r['lastErrorObject'], {'n': 1, 'updatedExisting': True})
        r = self.db.command('findAndModify', 'c', query={'_id': 9}, update={'$set': {'n': 0}},
                            upsert=True, new=False)
        self.assertIsNone(r['value'])
        self.assertEqual(r['lastErrorObject'], {'n': 1, 'updatedExisting': False, 'upserted': 9})
        r = self.db.command('findAndModify', 'c', query={'_id': 1}, remove=True, fields={'n': 1})
        self.assertEqual(r['value'], {'_id': 1, 'n': 5})
        self.assertIsNone(c.find_one({'_id': 1}))

    def test_count_distinct_aggregate(self):
        c = self.db.c
        c.insert_many([{'_id': i, 'g': i % 3, 'tags': ['a', 'b']} for i in range(10)])
        self.db.o.insert_many([{'_id': 0, 'name': 'zero'}])
        self.assertEqual(self.db.command('count', 'c', query={'g': 0})['n'], 4)
        self.assertEqual(self.db.command('count', 'c', skip=2, limit=5)['n'], 5)
        self.assertEqual(sorted(self.db.command('distinct', 'c', key='g')['values']), [0, 1, 2])
        r = self.db.command('aggregate', 'c', pipeline=[
            {'$group': {'_id': '$g', 'n': {'$sum': 1}}}, {'$sort': {'_id': 1}}], cursor={'batchSize': 1})
        self.assertEqual(r['cursor']['firstBatch'], [{'_id': 0, 'n': 4}])
        r2 = self.db.command('getMore', r['cursor']['id'], collection='c')
        self.assertEqual(r2['cursor']['nextBatch'], [{'_id': 1, 'n': 3}, {'_id': 2, 'n': 3}])
        res = list(c.aggregate([{'$match': {'_id': 0}}, {'$unwind': '$tags'},
                                {'$lookup': {'from': 'o', 'localField': 'g', 'foreignField': '_id', 'as': 'o'}},
                                {'$facet': {'cnt': [{'$count': 'n'}], 'first': [{'$limit': 1}]}}]))
        self.assertEqual(res[0]['cnt'], [{'n': 2}])
        self.assertEqual(res[0]['first'][0]['o'], [{'_id': 0, 'name': 'zero'}])
        d = self.err(self.db.command, 'aggregate', 'c', pipeline=[{'$bogus': {}}], cursor={})
        self.assertEqual((d['code'], d['codeName']), (40324, 'Location40324'))
        d = self.err(self.db.command, 'aggregate', 'c', pipeline=[{'$merge': {'into': 'x'}}], cursor={})
        self.assertEqual(d['code'], 40324)
        d = self.err(self.db.command, 'aggregate', 'c', pipeline=[{'$changeStream': {}}], cursor={})
        self.assertEqual(d['code'], 40573)
        d = self.err(lambda: list(c.find({'$text': {'$search': 'x'}})))
        self.assertEqual(d['code'], 27)
        cs = list(c.aggregate([{'$collStats': {'storageStats': {}}}]))[0]
        self.assertEqual(cs['ns'], 'mh_test.c')
        self.assertEqual(cs['storageStats']['count'], 10)
        self.assertGreater(cs['storageStats']['size'], 0)


class TestIndexesCollections(Base):
    def test_indexes(self):
        c = self.db.c
        r = self.db.command('createIndexes', 'c', indexes=[
            {'key': {'a': 1}, 'name': 'a_1', 'unique': True},
            {'key': {'t': 1}, 'name': 't_ttl', 'expireAfterSeconds': 100}])
        self.assertEqual((r['createdCollectionAutomatically'], r['numIndexesBefore'], r['numIndexesAfter']),
                         (True, 1, 3))
        r = self.db.command('createIndexes', 'c', indexes=[{'key': {'a': 1}, 'name': 'a_1', 'unique': True}])
        self.assertEqual(r['numIndexesAfter'], 3)
        d = self.err(self.db.command, 'createIndexes', 'c', indexes=[{'key': {'a': 1}, 'name': 'a_1'}])
        self.assertEqual((d['code'], d['codeName']), (85, 'IndexOptionsConflict'))
        d = self.err(self.db.command, 'createIndexes', 'c', indexes=[{'key': {'b': 1}, 'name': 'a_1'}])
        self.assertEqual((d['code'], d['codeName']), (86, 'IndexKeySpecsConflict'))
        ix = {i['name']: i for i in c.list_indexes()}
        self.assertEqual(set(ix), {'_id_', 'a_1', 't_ttl'})
        self.assertEqual(ix['a_1']['unique'], True)
        self.assertEqual(ix['t_ttl']['expireAfterSeconds'], 100)
        self.assertEqual(ix['a_1']['v'], 2)
        r = self.db.command('collMod', 'c', index={'keyPattern': {'t': 1}, 'expireAfterSeconds': 7})
        self.assertEqual((r['expireAfterSeconds_old'], r['expireAfterSeconds_new']), (100, 7))
        self.assertEqual({i['name']: i for i in c.list_indexes()}['t_ttl']['expireAfterSeconds'], 7)
        self.db.command('dropIndexes', 'c', index='a_1')
        d = self.err(self.db.command, 'dropIndexes', 'c', index='a_1')
        self.assertEqual((d['code'], d['codeName']), (27, 'IndexNotFound'))
        self.db.command('dropIndexes', 'c', index={'t': 1})
        self.assertEqual([i['name'] for i in c.list_indexes()], ['_id_'])
        # unique build over duplicates fails with 11000
        c.insert_many([{'q': 1}, {'q': 1}])
        d = self.err(c.create_index, 'q', unique=True)
        self.assertEqual(d['code'], 11000)
        d = self.err(c.create_index, [('body', 'geoHaystack')])
        self.assertEqual(d['code'], 67)

    def test_collections_databases(self):
        self.db.create_collection('plain')
        d = self.err(self.db.command, 'create', 'plain')
        self.assertEqual(d['code'], 48)
        # a 4.4 server does not know time-series collections
        d = self.err(self.db.command, 'create', 'ts', timeseries={'timeField': 't'})
        self.assertEqual((d['code'], d['errmsg']), (40415, "BSON field 'create.timeseries' is an unknown field."))
        self.db.other.insert_one({'a': 1})
        lc = self.db.command('listCollections', filter={'name': 'plain'})['cursor']['firstBatch']
        self.assertEqual(len(lc), 1)
        self.assertEqual((lc[0]['name'], lc[0]['type']), ('plain', 'collection'))
        self.assertIn('uuid', lc[0]['info'])
        names = self.db.list_collection_names()
        self.assertEqual(sorted(names), ['other', 'plain'])
        self.assertIn('mh_test', self.client.list_database_names())
        st = self.db.command('dbStats')
        self.assertEqual((st['db'], st['collections'], st['objects']), ('mh_test', 2, 1))
        self.assertGreater(st['dataSize'], 0)
        cs = self.db.command('collStats', 'other')
        self.assertEqual((cs['ns'], cs['count'], cs['nindexes']), ('mh_test.other', 1, 1))
        self.db.drop_collection('plain')
        d = self.err(self.db.command, 'drop', 'plain')
        self.assertEqual((d['code'], d['codeName']), (26, 'NamespaceNotFound'))
        self.client.drop_database('mh_test')
        self.assertNotIn('mh_test', self.client.list_database_names())

    def test_ttl_monitor(self):
        c = self.db.ttl
        old = datetime.datetime.utcnow() - datetime.timedelta(seconds=30)
        c.insert_many([{'_id': 1, 't': old}, {'_id': 2, 't': datetime.datetime.utcnow() + datetime.timedelta(hours=1)},
                       {'_id': 3, 't': [datetime.datetime(2100, 1, 1), old]}, {'_id': 4, 't': 'notadate'}])
        c.create_index('t', expireAfterSeconds=10)
        deadline = time.time() + 5
        while c.count_documents({}) > 2 and time.time() < deadline:
            time.sleep(0.1)
        self.assertEqual(sorted(d['_id'] for d in c.find()), [2, 4])


class TestTestCommands(Base):
    def tearDown(self):
        self.client.admin.command('configureFailPoint', 'failCommand', mode='off')

    def test_sleep_does_not_block_others(self):
        import threading
        t = threading.Thread(target=lambda: self.client.admin.command('sleep', 1, millis=800))
        t0 = time.time()
        t.start()
        time.sleep(0.1)
        self.db.c.insert_one({'x': 1})
        self.assertLess(time.time() - t0, 0.6)
        t.join()
        self.assertGreaterEqual(time.time() - t0, 0.75)

    def test_fail_command(self):
        admin = self.client.admin
        admin.command('configureFailPoint', 'failCommand', mode={'times': 2},
                      data={'failCommands': ['insert'], 'errorCode': 112, 'errorLabels': ['TransientTransactionError']})
        cl = self.srv.client(retryWrites=False, retryReads=False)
        for _ in range(2):
            with self.assertRaises(OperationFailure) as cm:
                cl.mh_test.c.insert_one({'x': 1})
            self.assertEqual(cm.exception.code, 112)
            self.assertEqual(cm.exception.details['errorLabels'], ['TransientTransactionError'])
            self.assertEqual(cm.exception.details['codeName'], 'WriteConflict')
        cl.mh_test.c.insert_one({'x': 2})
        self.assertEqual(self.db.c.count_documents({}), 1)
        admin.command('configureFailPoint', 'failCommand', mode='alwaysOn',
                      data={'failCommands': ['find'], 'blockConnection': True, 'blockTimeMS': 400})
        t0 = time.time()
        self.assertEqual(len(list(self.db.c.find())), 1)
        self.assertGreaterEqual(time.time() - t0, 0.38)
        admin.command('configureFailPoint', 'failCommand', mode={'times': 1},
                      data={'failCommands': ['find'], 'closeConnection': True})
        with self.assertRaises(AutoReconnect):
            list(cl.mh_test.c.find())
        self.assertEqual(len(list(cl.mh_test.c.find())), 1)
        admin.command('configureFailPoint', 'failCommand', mode='off')
        cl.close()


class TestPersistenceTlsReplset(unittest.TestCase):
    def test_persistence_sigkill(self):
        dbpath = tempfile.mkdtemp(prefix='mh_dbpath.')
        srv = None
        try:
            srv = MockProc('--dbpath', dbpath, '--ttl-interval', '3600')
            c = srv.client()
            db = c.mh_test
            db.p.insert_many([{'_id': i, 'v': i} for i in range(20)])
            db.p.create_index('v', unique=True, name='v_1')
            db.p.create_index('t', expireAfterSeconds=1, name='t_ttl')
            db.p.update_many({'v': {'$lt': 5}}, {'$set': {'small': True}})
            db.p.update_one({'_id': 'up'}, {'$set': {'v': 100}}, upsert=True)
            db.p.delete_many({'v': {'$gte': 15, '$lt': 100}})
            db.p.find_one_and_update({'_id': 7}, {'$inc': {'v': 1000}})
            db.create_collection('empty')
            db.gone.insert_one({'a': 1})
            db.drop_collection('gone')
            db.p.insert_one({'_id': 'exp', 't': datetime.datetime(2000, 1, 1)})
            # TTL monitor has not run (interval 3600 s): expired doc still visible
            self.assertEqual(db.p.count_documents({'_id': 'exp'}), 1)
            port = srv.port
            c.close()
            self.assertEqual(srv.kill(signal.SIGKILL), -signal.SIGKILL)
            srv.args = ['--dbpath', dbpath]
            srv.port = port
            srv.start()
            c = srv.client()
            db = c.mh_test
            docs = {d['_id']: d for d in db.p.find()}
            self.assertEqual(set(docs), set(range(15)) | {'up', 'exp'})
            self.assertTrue(docs[3]['small'])
            self.assertEqual(docs[7]['v'], 1007)
            self.assertEqual(docs['up']['v'], 100)
            self.assertEqual({i['name'] for i in db.p.list_indexes()}, {'_id_', 'v_1', 't_ttl'})
            with self.assertRaises(DuplicateKeyError):
                db.p.insert_one({'v': 1})
            self.assertEqual(sorted(db.list_collection_names()), ['empty', 'p'])
            # after restart the monitor (1 s) removes the expired doc
            deadline = time.time() + 5
            while db.p.count_documents({'_id': 'exp'}) and time.time() < deadline:
                time.sleep(0.1)
            self.assertEqual(db.p.count_documents({'_id': 'exp'}), 0)
            c.close()
        finally:
            if srv is not None:
                srv.close()
            shutil.rmtree(dbpath, ignore_errors=True)

    def test_tls(self):
        tmp = tempfile.mkdtemp(prefix='mh_tls.')
        try:
            def run(*a):
                subprocess.run(['openssl'] + list(a), cwd=tmp, check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=mh-test-ca',
                '-keyout', 'ca.key', '-out', 'ca.pem')
            for name in ('server', 'client'):
                run('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost',
                    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
                    '-keyout', name + '.key', '-out', name + '.csr')
                run('x509', '-req', '-in', name + '.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key',
                    '-CAcreateserial', '-days', '2', '-copy_extensions', 'copy', '-out', name + '.pem')
            with open(os.path.join(tmp, 'client-combined.pem'), 'w') as f:
                f.write(open(os.path.join(tmp, 'client.pem')).read() + open(os.path.join(tmp, 'client.key')).read())
            srv = MockProc('--tls-cert', os.path.join(tmp, 'server.pem'), '--tls-key', os.path.join(tmp, 'server.key'),
                           '--tls-ca', os.path.join(tmp, 'ca.pem'))
            try:
                c = pymongo.MongoClient(srv.uri(), tls=True, tlsCAFile=os.path.join(tmp, 'ca.pem'),
                                        tlsCertificateKeyFile=os.path.join(tmp, 'client-combined.pem'),
                                        serverSelectionTimeoutMS=5000)
                c.mh_test.t.insert_one({'_id': 'tls'})
                self.assertEqual(c.mh_test.t.find_one(), {'_id': 'tls'})
                c.close()
                # no client certificate -> refused
                c = pymongo.MongoClient(srv.uri(), tls=True, tlsCAFile=os.path.join(tmp, 'ca.pem'),
                                        serverSelectionTimeoutMS=1000)
                with self.assertRaises(ServerSelectionTimeoutError):
                    c.admin.command('ping')
                c.close()
                # plain TCP -> refused
                c = pymongo.MongoClient(srv.uri(), serverSelectionTimeoutMS=1000)
                with self.assertRaises(ServerSelectionTimeoutError):
                    c.admin.command('ping')
                c.close()
            finally:
                srv.close()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def test_replset_roles(self):
        srv = MockProc('--replset', 'rs0', '--secondary', '--hosts', '127.0.0.1:1,127.0.0.1:2',
                       '--me', '127.0.0.1:2')
        try:
            c = pymongo.MongoClient(srv.uri('?directConnection=true'), serverSelectionTimeoutMS=3000)
            h = c.admin.command('hello')
            self.assertEqual(h['setName'], 'rs0')
            self.assertEqual(h['hosts'], ['127.0.0.1:1', '127.0.0.1:2'])
            self.assertIs(h['secondary'], True)
            self.assertIs(h['isWritablePrimary'], False)
            self.assertEqual(h['me'], '127.0.0.1:2')
            self.assertEqual(h['primary'], '127.0.0.1:1')
            raw = socket.create_connection(('127.0.0.1', srv.port))
            raw.close()
            with self.assertRaises(NotMasterError) as cm:
                c.admin.command('insert', 'x', documents=[{'a': 1}])
            self.assertEqual((cm.exception.details['code'], cm.exception.details['codeName']),
                             (10107, 'NotWritablePrimary'))
            c.admin.command('mockSetRole', 'primary')
            h = c.admin.command('hello')
            self.assertIs(h['isWritablePrimary'], True)
            self.assertEqual(h['primary'], '127.0.0.1:2')
            c.close()
            c = pymongo.MongoClient(srv.uri('?directConnection=true'), serverSelectionTimeoutMS=3000)
            c.mh_test.x.insert_one({'_id': 1})
            self.assertEqual(c.mh_test.x.find_one(), {'_id': 1})
            c.close()
        finally:
            srv.close()

    def test_sigterm_exits_cleanly(self):
        srv = MockProc()
        try:
            self.assertEqual(srv.kill(signal.SIGTERM), 0)
        finally:
            srv.close()



class TestReplicaSet(unittest.TestCase):
    """Cluster time, retryable writes and their error labels."""

    def test_cluster_time_and_retryable_write_labels(self):
        srv = MockProc('--replset', 'rs0', '--command-log', os.path.join(tempfile.gettempdir(), 'x'))
        try:
            c = pymongo.MongoClient(srv.uri('?replicaSet=rs0'), serverSelectionTimeoutMS=5000)
            db = c.mh_test
            r = db.command('ping')
            self.assertIsInstance(r['operationTime'], Timestamp)
            self.assertEqual(r['$clusterTime']['clusterTime'], r['operationTime'])
            h = c.admin.command('hello')
            self.assertEqual(h['lastWrite']['opTime']['ts'].__class__, Timestamp)
            t0 = db.command('insert', 'c', documents=[{'_id': 0}])['operationTime']
            t1 = db.command('insert', 'c', documents=[{'_id': 1}])['operationTime']
            self.assertGreater(t1, t0)
            # the server labels a retryable error of a write that carries txnNumber
            c.admin.command('configureFailPoint', 'failCommand', mode={'times': 1},
                            data={'failCommands': ['insert'], 'errorCode': 91})
            with c.start_session() as s:
                with self.assertRaises((OperationFailure, NotMasterError)) as cm:
                    db.command('insert', 'c', documents=[{'_id': 2}], txnNumber=Int64(1), session=s)
                self.assertEqual(cm.exception.details.get('errorLabels'), ['RetryableWriteError'])
                # the same txnNumber again: executed once, the recorded reply comes back
                r1 = db.command('insert', 'c', documents=[{'_id': 3}], txnNumber=Int64(2), session=s)
                r2 = db.command('insert', 'c', documents=[{'_id': 3}], txnNumber=Int64(2), session=s)
                self.assertEqual((r1['n'], r2['n']), (1, 1))
                self.assertNotIn('writeErrors', r2)
                d = self.assertRaises(OperationFailure, db.command, 'insert', 'c', documents=[{'_id': 9}],
                                      txnNumber=Int64(1), session=s)
            self.assertEqual(sorted(x['_id'] for x in db.c.find()), [0, 1, 3])
            # without txnNumber (retryWrites=false) no label
            c.admin.command('configureFailPoint', 'failCommand', mode={'times': 1},
                            data={'failCommands': ['insert'], 'errorCode': 91})
            nr = pymongo.MongoClient(srv.uri('?replicaSet=rs0'), retryWrites=False)
            with self.assertRaises((OperationFailure, NotMasterError)) as cm:
                nr.mh_test.c.insert_one({'_id': 4})
            self.assertNotIn('errorLabels', cm.exception.details)
            # with retryWrites the driver retries the labelled error by itself
            c.admin.command('configureFailPoint', 'failCommand', mode={'times': 1},
                            data={'failCommands': ['insert'], 'errorCode': 189})
            db.c.insert_one({'_id': 5})
            self.assertEqual(db.c.count_documents({'_id': 5}), 1)
            # failCommand's errorLabels replace the server's own
            c.admin.command('configureFailPoint', 'failCommand', mode={'times': 1},
                            data={'failCommands': ['insert'], 'errorCode': 10107, 'errorLabels': []})
            with self.assertRaises((OperationFailure, NotMasterError)) as cm:
                db.c.insert_one({'_id': 6})
            self.assertNotIn('errorLabels', cm.exception.details)
            nr.close()
            c.close()
        finally:
            srv.close()

    def test_step_down_write_is_retried_on_the_new_primary(self):
        p1, p2 = free_port(), free_port()
        hosts = '127.0.0.1:%d,127.0.0.1:%d' % (p1, p2)
        m1 = MockProc('--replset', 'rs0', '--hosts', hosts, '--primary', port=p1)
        m2 = MockProc('--replset', 'rs0', '--hosts', hosts, '--secondary', port=p2)
        try:
            c = pymongo.MongoClient('mongodb://%s/?replicaSet=rs0' % hosts, serverSelectionTimeoutMS=5000,
                                    heartbeatFrequencyMS=500)
            c.mh_test.c.insert_one({'_id': 'before'})
            d1 = pymongo.MongoClient(m1.uri('?directConnection=true'))
            d2 = pymongo.MongoClient(m2.uri('?directConnection=true'))
            # a write on the stepped-down member: NotWritablePrimary + RetryableWriteError
            d1.admin.command('mockSetRole', 'secondary')
            with d1.start_session() as s:
                with self.assertRaises(NotMasterError) as cm:
                    d1.mh_test.command('insert', 'c', documents=[{'_id': 'x'}], txnNumber=Int64(7), session=s)
            self.assertEqual(cm.exception.details['code'], 10107)
            self.assertEqual(cm.exception.details['errorLabels'], ['RetryableWriteError'])
            d2.admin.command('mockSetRole', 'primary')
            c.mh_test.c.insert_one({'_id': 'after'})   # retried by the driver on the new primary
            self.assertEqual([x['_id'] for x in d2.mh_test.c.find()], ['after'])
            self.assertEqual([x['_id'] for x in d1.mh_test.c.find()], ['before'])
            # replSetStepDown on a one-member set: primary again after the period
            d2.admin.command('replSetStepDown', 1, secondaryCatchUpPeriodSecs=0)
            self.assertIs(d2.admin.command('hello')['isWritablePrimary'], False)
            for cl in (c, d1, d2):
                cl.close()
        finally:
            m1.close()
            m2.close()
        solo = MockProc('--replset', 'rs1')
        try:
            d = pymongo.MongoClient(solo.uri('?directConnection=true'))
            d.admin.command('replSetStepDown', 1, secondaryCatchUpPeriodSecs=0)
            self.assertIs(d.admin.command('hello')['isWritablePrimary'], False)
            deadline = time.time() + 5
            while not d.admin.command('hello')['isWritablePrimary'] and time.time() < deadline:
                time.sleep(0.1)
            self.assertIs(d.admin.command('hello')['isWritablePrimary'], True)
            d.close()
        finally:
            solo.close()


class TestChangeStreams(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = MockProc('--replset', 'rs0')
        cls.client = pymongo.MongoClient(cls.srv.uri('?replicaSet=rs0'), serverSelectionTimeoutMS=5000)
        cls.db = cls.client.mh_test
        cls.other = pymongo.MongoClient(cls.srv.uri('?replicaSet=rs0'))

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.other.close()
        cls.srv.close()

    def setUp(self):
        self.client.drop_database('mh_test')
        self.client.drop_database('mh_test2')

    def tearDown(self):
        for fp in ('failCommand', 'failGetMoreAfterCursorCheckout'):
            self.client.admin.command('configureFailPoint', fp, mode='off')

    def next_events(self, cs, n, timeout=5):
        out = []
        deadline = time.time() + timeout
        while len(out) < n and time.time() < deadline:
            ev = cs.try_next()
            if ev is not None:
                out.append(ev)
        return out

    def test_events_in_order(self):
        cs = self.db.c.watch(full_document='updateLookup', max_await_time_ms=200)
        oc = self.other.mh_test.c
        oc.insert_one({'_id': 1, 'v': 10, 'gone': True})
        oc.insert_one({'_id': 2, 'v': 20})
        oc.update_one({'_id': 1}, {'$set': {'v': 11, 'sub.k': 'x'}, '$unset': {'gone': 1}})
        oc.update_one({'_id': 1}, {'$set': {'v': 11}})          # no change: no event
        oc.replace_one({'_id': 2}, {'w': 1})
        oc.delete_one({'_id': 2})
        evs = self.next_events(cs, 5)
        self.assertEqual([e['operationType'] for e in evs], ['insert', 'insert', 'update', 'replace', 'delete'])
        self.assertEqual(evs[0]['fullDocument'], {'_id': 1, 'v': 10, 'gone': True})
        self.assertEqual(evs[0]['ns'], {'db': 'mh_test', 'coll': 'c'})
        self.assertEqual([e['documentKey'] for e in evs], [{'_id': 1}, {'_id': 2}, {'_id': 1}, {'_id': 2}, {'_id': 2}])
        self.assertEqual(evs[2]['updateDescription'], {'updatedFields': {'v': 11, 'sub': {'k': 'x'}},
                                                       'removedFields': ['gone']})
        self.assertEqual(evs[2]['fullDocument'], {'_id': 1, 'v': 11, 'sub': {'k': 'x'}})
        self.assertEqual(evs[3]['fullDocument'], {'_id': 2, 'w': 1})
        self.assertNotIn('fullDocument', evs[4])
        times = [e['clusterTime'] for e in evs]
        self.assertEqual(times, sorted(times))
        self.assertEqual(len(set(times)), 5)
        toks = [e['_id']['_data'] for e in evs]
        self.assertTrue(all(t.startswith('82') and int(t, 16) for t in toks))
        self.assertIsNone(cs.try_next())
        # resumeAfter / startAtOperationTime replay from that point
        with self.db.c.watch(resume_after=evs[2]['_id']) as cs2:
            self.assertEqual([e['operationType'] for e in self.next_events(cs2, 2)], ['replace', 'delete'])
        with self.db.c.watch(start_at_operation_time=evs[3]['clusterTime']) as cs3:
            self.assertEqual([e['operationType'] for e in self.next_events(cs3, 2)], ['replace', 'delete'])
        cs.close()

    def test_post_batch_resume_token_and_await(self):
        db = self.db
        r = db.command('aggregate', 'c', pipeline=[{'$changeStream': {}}], cursor={})
        cur = r['cursor']
        self.assertEqual(cur['firstBatch'], [])
        self.assertIn('_data', cur['postBatchResumeToken'])
        self.assertNotEqual(cur['id'], 0)
        t0 = time.time()
        g = db.command('getMore', cur['id'], collection='c', maxTimeMS=300)
        self.assertGreaterEqual(time.time() - t0, 0.28)
        self.assertEqual(g['cursor']['nextBatch'], [])
        self.assertIn('postBatchResumeToken', g['cursor'])
        # a write during the wait ends it early; the waiting getMore holds no lock
        import threading
        th = threading.Timer(0.2, lambda: self.other.mh_test.c.insert_one({'_id': 'w'}))
        th.start()
        t0 = time.time()
        g = db.command('getMore', cur['id'], collection='c', maxTimeMS=5000)
        self.assertLess(time.time() - t0, 2)
        th.join()
        self.assertEqual([e['documentKey']['_id'] for e in g['cursor']['nextBatch']], ['w'])
        self.assertEqual(g['cursor']['postBatchResumeToken'], g['cursor']['nextBatch'][-1]['_id'])
        # $match after the stage filters; the token still advances past filtered writes
        self.other.mh_test.c.insert_many([{'_id': i} for i in range(3)])
        r = db.command('aggregate', 'c', pipeline=[
            {'$changeStream': {'startAfter': g['cursor']['postBatchResumeToken']}},
            {'$match': {'documentKey._id': 1}}], cursor={'batchSize': 5})
        self.assertEqual([e['documentKey'] for e in r['cursor']['firstBatch']], [{'_id': 1}])
        self.assertGreater(r['cursor']['postBatchResumeToken']['_data'], r['cursor']['firstBatch'][0]['_id']['_data'])
        self.assertRaises(OperationFailure, db.command, 'aggregate', 'c', pipeline=[
            {'$changeStream': {}}, {'$group': {'_id': 1}}], cursor={})
        with self.assertRaises(OperationFailure) as cm:
            db.command('aggregate', 'c', pipeline=[{'$changeStream': {'bogus': 1}}], cursor={})
        self.assertEqual(cm.exception.code, 40415)
        r = db.command('aggregate', 'c', pipeline=[{'$changeStream': {}}, {'$project': {'_id': 0}}], cursor={})
        self.other.mh_test.c.insert_one({})
        with self.assertRaises(OperationFailure) as cm:
            db.command('getMore', r['cursor']['id'], collection='c')
        self.assertEqual(cm.exception.code, 280)

    def test_resume_after_errors_loses_and_repeats_nothing(self):
        oc = self.other.mh_test.c
        cs = self.db.c.watch(max_await_time_ms=100)
        oc.insert_many([{'_id': i} for i in range(3)])
        got = [e['documentKey']['_id'] for e in self.next_events(cs, 1)]
        # error after cursor checkout: labelled ResumableChangeStreamError -> resume
        self.client.admin.command('configureFailPoint', 'failGetMoreAfterCursorCheckout', mode={'times': 1},
                                  data={'errorCode': 6})
        oc.insert_many([{'_id': i} for i in range(3, 6)])
        got += [e['documentKey']['_id'] for e in self.next_events(cs, 5)]
        self.assertEqual(got, list(range(6)))
        # closed connection -> resume
        self.client.admin.command('configureFailPoint', 'failCommand', mode={'times': 1},
                                  data={'failCommands': ['getMore'], 'closeConnection': True})
        oc.insert_many([{'_id': i} for i in range(6, 9)])
        got += [e['documentKey']['_id'] for e in self.next_events(cs, 3)]
        self.assertEqual(got, list(range(9)))
        # failCommand errorCode 6 on getMore carries no label (as MongoDB 4.4+): not resumed
        self.client.admin.command('configureFailPoint', 'failCommand', mode={'times': 1},
                                  data={'failCommands': ['getMore'], 'errorCode': 6})
        with self.assertRaises(OperationFailure) as cm:
            self.next_events(cs, 1, timeout=1)
        self.assertEqual(cm.exception.code, 6)
        self.assertNotIn('errorLabels', cm.exception.details)

    def test_db_cluster_streams_drop_rename_invalidate(self):
        dbs = self.db.watch(max_await_time_ms=100)
        cl = self.client.watch(max_await_time_ms=100)
        coll = self.db.a.watch(max_await_time_ms=100)
        o = self.other
        o.mh_test.a.insert_one({'_id': 1})
        o.mh_test.b.insert_one({'_id': 2})
        o.mh_test2.z.insert_one({'_id': 3})
        o.admin.command('renameCollection', 'mh_test.a', to='mh_test.a2')
        o.mh_test2.drop_collection('z')
        ev = self.next_events(dbs, 3)
        self.assertEqual([(e['operationType'], e['ns']['coll']) for e in ev],
                         [('insert', 'a'), ('insert', 'b'), ('rename', 'a')])
        self.assertEqual(ev[2]['to'], {'db': 'mh_test', 'coll': 'a2'})
        ev = self.next_events(cl, 5)
        self.assertEqual([(e['operationType'], e['ns']['db']) for e in ev],
                         [('insert', 'mh_test'), ('insert', 'mh_test'), ('insert', 'mh_test2'),
                          ('rename', 'mh_test'), ('drop', 'mh_test2')])
        ev = self.next_events(coll, 3)
        self.assertEqual([e['operationType'] for e in ev], ['insert', 'rename', 'invalidate'])
        self.assertFalse(coll.alive)
        with self.assertRaises(OperationFailure) as cm:
            self.db.a.watch(resume_after=ev[2]['_id'])
        self.assertEqual(cm.exception.code, 260)
        with self.db.a.watch(start_after=ev[2]['_id'], max_await_time_ms=100) as again:
            o.mh_test.a.insert_one({'_id': 'new'})
            self.assertEqual([e['documentKey'] for e in self.next_events(again, 1)], [{'_id': 'new'}])
        o.drop_database('mh_test')
        ev = self.next_events(dbs, 6)
        self.assertEqual([e['operationType'] for e in ev],
                         ['insert', 'drop', 'drop', 'drop', 'dropDatabase', 'invalidate'])
        self.assertEqual(sorted(e['ns']['coll'] for e in ev[1:4]), ['a', 'a2', 'b'])
        self.assertFalse(dbs.alive)
        for s in (dbs, cl):
            s.close()
        with self.assertRaises(OperationFailure) as cm:
            self.client.admin.watch()
        self.assertEqual(cm.exception.code, 73)

    def test_history_lost(self):
        srv = MockProc('--replset', 'rs0', '--oplog-size', '3')
        try:
            c = pymongo.MongoClient(srv.uri('?replicaSet=rs0'))
            cs = c.mh_test.c.watch()
            c.mh_test.c.insert_one({'_id': 0})
            tok = cs.next()['_id']
            cs.close()
            with c.mh_test.c.watch(resume_after=tok) as cs2:
                self.assertIsNone(cs2.try_next())
            c.mh_test.c.insert_many([{'_id': i} for i in range(1, 6)])
            with self.assertRaises(OperationFailure) as cm:
                c.mh_test.c.watch(resume_after=tok)
            self.assertEqual((cm.exception.code, cm.exception.details['codeName']), (286, 'ChangeStreamHistoryLost'))
            c.close()
        finally:
            srv.close()


class TestTextSearch(Base):
    def setUp(self):
        Base.setUp(self)
        c = self.db.art
        c.create_index([('title', 'text'), ('body', 'text')], weights={'title': 10}, name='t')
        c.insert_many([
            {'_id': 1, 'title': 'other', 'body': 'coffee'},
            {'_id': 2, 'title': 'coffee', 'body': 'tea'},
            {'_id': 3, 'title': 'tea', 'body': 'tea'},
            {'_id': 4, 'title': 'cakes', 'body': 'coffee and tea with cakes in the coffee shop'},
            {'_id': 5, 'title': 'Shop', 'body': 'nothing to see'},
        ])

    def ids(self, search, **kw):
        q = {'$text': dict({'$search': search}, **kw)}
        return [d['_id'] for d in self.db.art.find(q, {'s': {'$meta': 'textScore'}}).sort(
            [('s', {'$meta': 'textScore'})])]

    def test_index_listing_and_conflicts(self):
        ix = {i['name']: i for i in self.db.art.list_indexes()}['t']
        self.assertEqual(ix['key'], {'_fts': 'text', '_ftsx': 1})
        self.assertEqual(ix['weights'], {'body': 1, 'title': 10})
        self.assertEqual((ix['default_language'], ix['language_override'], ix['textIndexVersion']),
                         ('english', 'language', 3))
        # the same index again is fine, a second text index is not
        self.db.art.create_index([('title', 'text'), ('body', 'text')], weights={'title': 10}, name='t')
        d = self.err(self.db.art.create_index, [('body', 'text')])
        self.assertEqual((d['code'], d['codeName']), (85, 'IndexOptionsConflict'))
        d = self.err(lambda: list(self.db.other.find({'$text': {'$search': 'x'}})))
        self.assertEqual((d['code'], d['codeName'], d['errmsg']),
                         (27, 'IndexNotFound', 'text index required for $text query'))
        d = self.err(lambda: list(self.db.art.find({}, {'s': {'$meta': 'textScore'}})))
        self.assertEqual(d['code'], 40218)

    def test_terms_phrases_negations_and_order(self):
        # weights multiply: the title hit (weight 10) beats body hits
        self.assertEqual(self.ids('coffee')[0], 2)
        self.assertEqual(set(self.ids('coffee')), {1, 2, 4})
        # OR of terms; more matched terms rank higher (4 has coffee and tea twice)
        res = self.ids('coffee tea')
        self.assertEqual(set(res), {1, 2, 3, 4})
        self.assertLess(res.index(4), res.index(1))
        self.assertEqual(self.ids('"coffee shop"'), [4])
        self.assertEqual(self.ids('coffee -cakes')[:1], [2])
        self.assertNotIn(4, self.ids('coffee -cakes'))
        self.assertEqual(self.ids('-coffee'), [])
        self.assertEqual(self.ids('the'), [])                 # stop word
        self.assertEqual(self.ids('SHOP'), [5, 4])            # case-insensitive, title weighs more
        self.assertEqual(self.ids('SHOP', **{'$caseSensitive': True}), [])
        self.assertEqual(self.ids('Shop', **{'$caseSensitive': True}), [5])
        scores = [d['s'] for d in self.db.art.find({'$text': {'$search': 'coffee tea'}},
                                                   {'s': {'$meta': 'textScore'}}).sort([('s', {'$meta': 'textScore'})])]
        self.assertEqual(scores, sorted(scores, reverse=True))
        self.assertGreater(scores[0], scores[-1])

    def test_count_aggregate_and_writes(self):
        self.assertEqual(self.db.art.count_documents({'$text': {'$search': 'tea'}}), 3)
        self.assertEqual(self.db.command('count', 'art', query={'$text': {'$search': 'tea'}})['n'], 3)
        res = list(self.db.art.aggregate([{'$match': {'$text': {'$search': 'coffee'}}},
                                          {'$project': {'score': {'$meta': 'textScore'}}},
                                          {'$sort': {'score': -1}}, {'$limit': 2}]))
        self.assertEqual([d['_id'] for d in res], [2, 4])
        self.assertGreater(res[0]['score'], res[1]['score'])
        d = self.err(lambda: list(self.db.art.aggregate([{'$match': {}}, {'$match': {'$text': {'$search': 'x'}}}])))
        self.assertEqual(d['code'], 17313)
        self.assertEqual(self.db.art.update_many({'$text': {'$search': 'cakes'}}, {'$set': {'sweet': 1}}).modified_count, 1)
        self.assertEqual(self.db.art.find_one({'sweet': 1})['_id'], 4)
        self.assertEqual(self.db.art.delete_many({'$text': {'$search': 'tea'}}).deleted_count, 3)
        self.assertEqual(sorted(d['_id'] for d in self.db.art.find()), [1, 5])


class TestGeo(Base):
    PLACES = [('centre', 2.3522, 48.8566), ('eiffel', 2.2945, 48.8584), ('lyon', 4.8357, 45.7640),
              ('nyc', -74.0060, 40.7128)]

    def setUp(self):
        Base.setUp(self)
        self.db.pl.create_index([('loc', '2dsphere')])
        self.db.pl.insert_many([{'_id': n, 'loc': {'type': 'Point', 'coordinates': [x, y]}}
                                for n, x, y in self.PLACES])
        self.here = {'type': 'Point', 'coordinates': [2.35, 48.85]}

    def test_near_sorted_by_distance_with_bounds(self):
        near = lambda **kw: [d['_id'] for d in self.db.pl.find(
            {'loc': {'$near': dict({'$geometry': self.here}, **kw)}})]
        self.assertEqual(near(), ['centre', 'eiffel', 'lyon', 'nyc'])
        self.assertEqual(near(**{'$maxDistance': 10000}), ['centre', 'eiffel'])
        self.assertEqual(near(**{'$minDistance': 1000, '$maxDistance': 500000}), ['eiffel', 'lyon'])
        sph = [d['_id'] for d in self.db.pl.find({'loc': {'$nearSphere': [2.35, 48.85], '$maxDistance': 0.01}})]
        self.assertEqual(sph, ['centre', 'eiffel'])          # legacy pair: radians
        self.assertEqual(self.db.command('count', 'pl', query={'loc': {'$near': {
            '$geometry': self.here, '$maxDistance': 10000}}})['n'], 2)
        d = self.err(lambda: list(self.db.nogeo.find({'loc': {'$near': {'$geometry': self.here}}})))
        self.assertEqual((d['code'], d['codeName']), (291, 'NoQueryExecutionPlans'))
        self.assertIn('unable to find index for $geoNear query', d['errmsg'])
        d = self.err(self.db.pl.count_documents, {'loc': {'$near': {'$geometry': self.here}}})
        self.assertEqual(d['code'], 2)
        d = self.err(self.db.pl.insert_one, {'loc': {'type': 'Point', 'coordinates': [200, 1]}})
        self.assertEqual(d['code'], 16755)

    def test_geo_within(self):
        w = lambda spec, coll='pl': sorted(d['_id'] for d in self.db[coll].find({'loc': {'$geoWithin': spec}}))
        self.assertEqual(w({'$centerSphere': [[2.35, 48.85], 1000 / 6378100.0]}), ['centre'])
        self.assertEqual(w({'$centerSphere': [[2.35, 48.85], 500000 / 6378100.0]}), ['centre', 'eiffel', 'lyon'])
        self.assertEqual(w({'$geometry': {'type': 'Polygon', 'coordinates': [
            [[2.2, 48.8], [2.5, 48.8], [2.35, 48.95], [2.2, 48.8]]]}}), ['centre', 'eiffel'])
        self.assertEqual(w({'$box': [[2.3, 45.0], [5, 49]]}), ['centre', 'lyon'])
        self.assertEqual(w({'$polygon': [[-80, 30], [-70, 30], [-75, 45]]}), ['nyc'])
        # no index needed
        self.db.flat.insert_many([{'_id': 1, 'loc': [1, 1]}, {'_id': 2, 'loc': [5, 5]}])
        self.assertEqual(w({'$center': [[0, 0], 2]}, 'flat'), [1])
        self.assertEqual(self.db.pl.count_documents({'loc': {'$geoWithin': {'$centerSphere': [[2.35, 48.85], 0.01]}}}), 2)
        self.assertEqual(self.db.pl.count_documents({'$or': [{'_id': 'nyc'}, {'loc': {'$geoWithin': {
            '$centerSphere': [[2.35, 48.85], 0.0002]}}}]}), 2)

    def test_geo_near_stage(self):
        res = list(self.db.pl.aggregate([{'$geoNear': {
            'near': self.here, 'distanceField': 'dist.m', 'spherical': True, 'maxDistance': 500000,
            'distanceMultiplier': 0.001, 'includeLocs': 'where', 'query': {'_id': {'$ne': 'centre'}}}}]))
        self.assertEqual([d['_id'] for d in res], ['eiffel', 'lyon'])
        self.assertAlmostEqual(res[0]['dist']['m'], 4.17, delta=0.05)   # km
        self.assertAlmostEqual(res[1]['dist']['m'], 391.4, delta=1.0)
        self.assertEqual(res[0]['where']['coordinates'], [2.2945, 48.8584])
        # legacy pair + spherical: radians
        r = list(self.db.pl.aggregate([{'$geoNear': {'near': [2.35, 48.85], 'distanceField': 'd',
                                                     'spherical': True}}, {'$limit': 1}]))
        self.assertAlmostEqual(r[0]['d'] * 6378100, 752, delta=5)
        d = self.err(lambda: list(self.db.nogeo.aggregate([{'$geoNear': {'near': self.here, 'distanceField': 'd'}}])))
        self.assertEqual(d['code'], 27)
        self.db.pl.create_index([('other', '2dsphere')])
        d = self.err(lambda: list(self.db.pl.aggregate([{'$geoNear': {'near': self.here, 'distanceField': 'd'}}])))
        self.assertIn('more than one 2dsphere index', d['errmsg'])
        r = list(self.db.pl.aggregate([{'$geoNear': {'near': self.here, 'distanceField': 'd', 'key': 'loc'}}]))
        self.assertEqual(len(r), 4)
        d = self.err(lambda: list(self.db.pl.aggregate([{'$match': {}}, {'$geoNear': {
            'near': self.here, 'distanceField': 'd'}}])))
        self.assertEqual(d['code'], 40603)

    def test_2d_index_flat(self):
        self.db.f.create_index([('p', '2d')])
        self.db.f.insert_many([{'_id': i, 'p': [i, 0]} for i in range(5)])
        self.assertEqual([d['_id'] for d in self.db.f.find({'p': {'$near': [2.2, 0], '$maxDistance': 1.5}})],
                         [2, 3, 1])
        d = self.err(self.db.f.insert_one, {'p': 'nowhere'})
        self.assertEqual(d['code'], 16804)


class TestTimeSeries(unittest.TestCase):
    def test_timeseries_on_5_0(self):
        srv = MockProc('--version', '5.0.0')
        try:
            c = srv.client()
            db = c.mh_test
            self.assertEqual(c.admin.command('hello')['maxWireVersion'], 13)
            self.assertEqual(c.admin.command('buildInfo')['versionArray'], [5, 0, 0, 0])
            db.command('create', 'ts', timeseries={'timeField': 't', 'metaField': 'm', 'granularity': 'minutes'},
                       expireAfterSeconds=60)
            lc = db.command('listCollections', filter={'name': 'ts'})['cursor']['firstBatch']
            self.assertEqual(lc[0]['type'], 'timeseries')
            self.assertEqual(lc[0]['options'], {'timeseries': {'timeField': 't', 'metaField': 'm', 'granularity': 'minutes',
                                                               'bucketMaxSpanSeconds': 86400}, 'expireAfterSeconds': 60})
            now = datetime.datetime.utcnow().replace(microsecond=0)
            db.ts.insert_many([{'t': now, 'm': {'s': 1}, 'v': 1},
                               {'t': now - datetime.timedelta(hours=1), 'm': {'s': 2}, 'v': 2}])
            self.assertEqual([d['v'] for d in db.ts.find({'m.s': 1})], [1])
            with self.assertRaises(BulkWriteError) as cm:
                db.ts.insert_many([{'v': 3}])
            self.assertEqual(cm.exception.details['writeErrors'][0]['code'], 2)
            self.assertIn("'t' must be present and contain a valid BSON UTC datetime value",
                          cm.exception.details['writeErrors'][0]['errmsg'])
            # the TTL monitor (1 s) removes the measurement older than 60 s
            deadline = time.time() + 5
            while db.ts.count_documents({}) > 1 and time.time() < deadline:
                time.sleep(0.1)
            self.assertEqual([d['v'] for d in db.ts.find()], [1])
            for bad, code in (({'metaField': 'm'}, 40414), ({'timeField': 't', 'x': 1}, 40415),
                              ({'timeField': 't', 'granularity': 'days'}, 2), ({'timeField': 't', 'metaField': 't'}, 72),
                              ('t', 14)):
                with self.assertRaises(OperationFailure) as cm:
                    db.command('create', 'bad', timeseries=bad)
                self.assertEqual(cm.exception.code, code, bad)
            with self.assertRaises(OperationFailure) as cm:
                db.command('create', 'bad', expireAfterSeconds=5)
            self.assertEqual(cm.exception.code, 72)
            with self.assertRaises(OperationFailure) as cm:
                db.command('create', 'ts', timeseries={'timeField': 't'})
            self.assertEqual(cm.exception.code, 48)
            self.assertNotIn('bad', db.list_collection_names())
            c.close()
        finally:
            srv.close()

if __name__ == '__main__':
    unittest.main(verbosity=2)
