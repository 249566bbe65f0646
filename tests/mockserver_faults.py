"""Fault injection for tests/mock_server.py: the test-only commands that make
the server fail on purpose.

  configureFailPoint  failCommand (errorCode, errorLabels, closeConnection,
                      blockConnection/blockTimeMS, writeConcernError, appName)
                      and failGetMoreAfterCursorCheckout, with the modes
                      alwaysOn, off, {times: n}, {skip: n}
  mockSetRole         (admin) flip the replica-set role (dispatched by
                      Engine.dispatch, which calls _set_role)
  replSetStepDown     (admin) the real command: becomes secondary; a one-member
                      set is primary again after `secs`

See the module docstring of mock_server.py for the whole command set.
"""

import threading
import time
from collections import OrderedDict

from bson.objectid import ObjectId

from mockserver_common import CmdError


class FaultsMixin(object):
    """Engine methods for fail points and replica-set role changes (mock_server.Engine)."""

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

    # ---------------- replica-set role -----------------
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
