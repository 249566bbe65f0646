#!/usr/bin/python3
"""Compiles and runs every C code block of README.md, so the README cannot
drift from the library.

Usage (make check does this):
    bash tests/with_server.sh /usr/bin/python3 tests/readme_snippets.py

Each ```c block is found by the heading it sits under and its number
there ("GridFS #1").  WRAPPERS below says how to make a program of it:
  * a block of statements goes inside main() between `before` and `after`
    (which declare what the block takes for granted and check what it did);
    its leading #include lines and one-line static function definitions go
    to file scope;
  * a block that defines functions (`file_scope=True`) is compiled as is,
    followed by `main` from the wrapper, or together with the blocks named
    in `with_blocks` when it is a main() of its own.
A placeholder statement `{ ... }` is compiled as `{ /* ... */ }`; unused
parameters are not warnings (a README callback shows its signature);
everything else is -std=c11 -Wall -Wextra -Wpedantic -Werror.

Every program runs against MONGO_TEST_URI (as MONGO_CACHE_URI) in a fresh
temporary directory and must exit 0; `after` code returns 1 with a message
when the block did not do what the README says.  A block without a wrapper,
or a wrapper without a block, fails the run: add or fix the wrapper when
you add or change a README example.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, 'README.md')
OUT = os.path.join(ROOT, 'build', 'readme_snippets')

WEB = 'Web-backend helpers: sessions, caches and user event logs'
DOCS = 'Documents: CRUD, bulk, aggregation, streaming, indexes, text and geo'

FAIL = r'''
#define README_FAIL(...) do { fprintf (stderr, __VA_ARGS__); fputc ('\n', stderr); return 1; } while (0)
'''


class Wrapper:
    def __init__(self, before='', after='', prelude='', file_scope=False, main='',
                 with_blocks=(), run='always', files=None, cflags=()):
        self.before = before          # statements before the block (in main)
        self.after = after            # statements after it (in main)
        self.prelude = prelude        # file scope, before the block
        self.file_scope = file_scope  # the block defines functions
        self.main = main              # main() for a file-scope block
        self.with_blocks = with_blocks  # other blocks compiled before this one
        self.run = run                # 'always', or 'mock': only on the test server
        self.files = files or {}      # files made in the working directory first
        self.cflags = list(cflags)    # added to the compiler's flags


WRAPPERS = {
    ('Quick start', 1): Wrapper(
        after='''
   mongo_helper_shutdown ();
   return 0;'''),

    (WEB, 1): Wrapper(
        file_scope=True,
        prelude=FAIL,
        main=r'''
int
main (void)
{
   mongo_helper_error_t err;
   char sid[MONGO_HELPER_SESSION_ID_SIZE], again[MONGO_HELPER_SESSION_ID_SIZE];
   char other[MONGO_HELPER_SESSION_ID_SIZE];
   char body[256] = "";

   if (!(sessions = mongo_helper_sessions_new (NULL, &err)) ||
       !(cache = mongo_helper_cache_new (NULL, &err)) ||
       !(events = mongo_helper_eventlog_new (NULL, &err)) ||
       !(writer = mongo_helper_event_writer_new (events, NULL, &err))) {
      README_FAIL ("start-up: %s", err.message);
   }
   /* A first visit (no cookie) gets a new session and the page. */
   if (!handle_request (NULL, sid, body, sizeof body, &err)) {
      README_FAIL ("first visit failed: %s: %s", mongo_helper_category_name (err.category), err.message);
   }
   if (strlen (sid) != MONGO_HELPER_SESSION_ID_LEN || strcmp (body, "<h1>Welcome</h1>") != 0) {
      README_FAIL ("first visit: sid '%s', body '%s'", sid, body);
   }
   /* The next request with that cookie keeps the session. */
   memset (again, 'x', sizeof again);
   if (!handle_request (sid, again, body, sizeof body, &err) || strcmp (again, sid) != 0) {
      README_FAIL ("second visit: expected sid %s, got '%.44s' (%s)", sid, again, err.message);
   }
   /* A forged cookie is a new session. */
   if (!handle_request ("forged", other, body, sizeof body, &err) || strcmp (other, sid) == 0 ||
       strlen (other) != MONGO_HELPER_SESSION_ID_LEN) {
      README_FAIL ("forged cookie: got '%.44s' (%s)", other, err.message);
   }
   mongo_helper_event_writer_destroy (writer, 3000, NULL);
   mongo_helper_eventlog_destroy (events);
   mongo_helper_cache_destroy (cache);
   mongo_helper_sessions_destroy (sessions);
   mongo_helper_shutdown ();
   return 0;
}'''),

    # handle_request() is left to a web server the README does not show.
    (WEB, 2): Wrapper(file_scope=True, with_blocks=[(WEB, 1)], cflags=['-Wno-unused-function']),

    (DOCS, 1): Wrapper(
        prelude=FAIL + r'''
static char sent[4096];
static void send_body (const char *json) { snprintf (sent, sizeof sent, "%s", json ? json : ""); }
static void log_bad_row (size_t i, const char *why) { fprintf (stderr, "row %zu: %s\n", i, why); }
''',
        before=r'''
   const char *body = "{\"name\": \"pan\", \"tags\": [\"kitchen\"], \"created\": 1}";
   bson_t *rows[3];
   const bson_t *const *docs = (const bson_t *const *) rows;
   size_t n = 3;

   for (size_t i = 0; i < n; i++) {
      rows[i] = BCON_NEW ("row", BCON_INT64 ((int64_t) i));
   }
''',
        after=r'''
   if (!strstr (sent, "\"pan\"")) {
      README_FAIL ("find_json did not return the inserted product: '%s'", sent);
   }
   for (size_t i = 0; i < n; i++) {
      bson_destroy (rows[i]);
   }
   bson_destroy (email);
   bson_destroy (unique);
   if (err.category != MONGO_HELPER_ERROR_NONE) {
      README_FAIL ("%s", err.message);
   }
   mongo_helper_shutdown ();
   return 0;'''),

    ('GridFS', 1): Wrapper(
        prelude=FAIL,
        files={'large_file.pdf': b'%PDF-1.4 not really a PDF\n' * 1000},
        before='''
   mongo_helper_error_t err;''',
        after='''
   bson_destroy (meta);
   if (err.category != MONGO_HELPER_ERROR_NONE) {
      README_FAIL ("%s", err.message);
   }
   mongo_helper_shutdown ();
   return 0;'''),

    # A standalone server has no change streams: the block's error path runs
    # (a real replica set would wait for the block's 60 s timeout).
    ('Change streams', 1): Wrapper(
        run='mock',
        prelude=FAIL + '''
static const bson_t *saved_token = NULL;
''',
        before='''
   mongo_helper_error_t err;''',
        after='''
   if (err.code != 40573) {
      README_FAIL ("expected the standalone's error 40573, got %d: %s", (int) err.code, err.message);
   }
   mongo_helper_shutdown ();
   return 0;'''),

    ('Concurrent operations', 1): Wrapper(
        prelude=FAIL,
        before='''
   mongo_helper_error_t err;
   bson_t *active = BCON_NEW ("active", BCON_BOOL (true));
   bson_t *by_email = BCON_NEW ("email", BCON_UTF8 ("a@example.com"));''',
        after='''
   bson_destroy (active);
   bson_destroy (by_email);
   if (!all_ok) {
      README_FAIL ("run_concurrent: %s", err.message);
   }
   mongo_helper_shutdown ();
   return 0;'''),
}

HEADER = '''/* Generated by tests/readme_snippets.py from README.md: do not edit. */
#define _POSIX_C_SOURCE 200809L
#include <mongo_helper.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
'''


def blocks(path):
    """Yields (key, line number, code) for each ```c block."""
    heading = None
    count = {}
    code = None
    start = 0
    with open(path, encoding='utf-8') as f:
        for n, line in enumerate(f, 1):
            if code is None:
                m = re.match(r'#+\s+(.*?)\s*$', line)
                if m:
                    heading = m.group(1)
                elif line.rstrip() == '```c':
                    code, start = [], n + 1
            elif line.rstrip() == '```':
                count[heading] = count.get(heading, 0) + 1
                yield (heading, count[heading]), start, ''.join(code)
                code = None
            else:
                code.append(line)
    if code is not None:
        raise SystemExit('README.md:%d: unterminated ```c block' % start)


def split_file_scope(code):
    """Leading #include lines and one-line static function definitions."""
    lines = code.splitlines(True)
    top = []
    while lines and (lines[0].strip() == '' or lines[0].startswith('#include') or
                     re.match(r'static .*\)\s*\{.*\}\s*$', lines[0])):
        top.append(lines.pop(0))
    return ''.join(top), ''.join(lines)


def placeholders(code):
    return re.sub(r'\{\s*\.\.\.\s*\}', '{ /* ... */ }', code)


def program(key, code, all_blocks):
    w = WRAPPERS[key]
    src = [HEADER]
    for other in w.with_blocks:
        src.append('\n/* README block %s #%d */\n' % other)
        src.append(placeholders(all_blocks[other][1]))
    src.append(w.prelude)
    src.append('\n#line %d "README.md"\n' % all_blocks[key][0])
    if w.file_scope:
        src.append(placeholders(code))
        src.append(w.main)
    else:
        top, body = split_file_scope(placeholders(code))
        src.append(top)
        src.append('\nint\nmain (void)\n{\n')
        src.append(w.before)
        src.append('\n#line %d "README.md"\n' % (all_blocks[key][0] + top.count('\n')))
        src.append(body)
        src.append('\n#line 1 "wrapper"\n')
        src.append(w.after)
        src.append('\n}\n')
    return ''.join(src)


def pkg(*args):
    return shlex.split(subprocess.check_output(['pkg-config'] + list(args) +
                                               ['libmongoc-1.0', 'libbson-1.0'], text=True))


def main():
    uri = os.environ.get('MONGO_TEST_URI')
    if not uri:
        raise SystemExit('readme_snippets: MONGO_TEST_URI is not set: run it under '
                         'tests/with_server.sh (make check does)')
    lib = os.path.join(ROOT, 'libmongo_helper.a')
    if not os.path.exists(lib):
        raise SystemExit('readme_snippets: %s is missing: run make first' % lib)
    found = {}
    for key, line, code in blocks(README):
        found[key] = (line, code)
    errors = []
    for key in found:
        if key not in WRAPPERS:
            errors.append('README.md:%d: the C block "%s #%d" has no wrapper in '
                          'tests/readme_snippets.py: add one' % (found[key][0], key[0], key[1]))
    for key in WRAPPERS:
        if key not in found:
            errors.append('tests/readme_snippets.py: no C block "%s #%d" in README.md any more: '
                          'fix or remove its wrapper' % key)
    if errors:
        raise SystemExit('\n'.join(errors))

    cc = shlex.split(os.environ.get('CC', 'cc'))
    cflags = ['-std=c11', '-Wall', '-Wextra', '-Wpedantic', '-Werror',
              '-Wno-unused-parameter', '-I' + ROOT] + pkg('--cflags')
    libs = [lib] + pkg('--libs') + ['-liniparser', '-lcrypto', '-lpthread']
    os.makedirs(OUT, exist_ok=True)
    on_mock = os.environ.get('MH_MOCK_SERVER') == '1'
    failed = 0
    for key, (line, code) in found.items():
        name = re.sub(r'[^a-z0-9]+', '_', key[0].lower()).strip('_')[:40] + '_%d' % key[1]
        label = '%s #%d (README.md:%d)' % (key[0], key[1], line)
        src = os.path.join(OUT, name + '.c')
        exe = os.path.join(OUT, name)
        with open(src, 'w', encoding='utf-8') as f:
            f.write(program(key, code, found))
        w = WRAPPERS[key]
        r = subprocess.run(cc + cflags + w.cflags + [src, '-o', exe] + libs,
                           capture_output=True, text=True)
        if r.returncode != 0:
            failed += 1
            print('readme: FAIL %s does not compile (%s):\n%s' % (label, src, r.stderr))
            continue
        if w.run == 'mock' and not on_mock:
            print('readme: ok   %s compiled (runs only against the test server)' % label)
            continue
        work = tempfile.mkdtemp(prefix='mh_readme_')
        try:
            for fname, content in w.files.items():
                with open(os.path.join(work, fname), 'wb') as f:
                    f.write(content)
            env = dict(os.environ, MONGO_CACHE_URI=uri, MONGO_HELPER_CONFIG='/dev/null')
            try:
                r = subprocess.run([exe], cwd=work, env=env, capture_output=True, text=True,
                                   timeout=120)
                status, out = r.returncode, r.stdout + r.stderr
            except subprocess.TimeoutExpired as exc:
                status, out = 'timeout', str(exc)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if status != 0:
            failed += 1
            print('readme: FAIL %s exited with %s:\n%s' % (label, status, out))
        else:
            print('readme: ok   %s compiled and ran' % label)
    print('readme: %d C blocks, %d failed' % (len(found), failed))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
