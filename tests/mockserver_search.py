"""Text search and geospatial queries for tests/mock_server.py.

Text search ($text with a text index)
  Tokenizing: words are runs of letters/digits/apostrophes; case folded
  (unless $caseSensitive) and diacritics removed (unless
  $diacriticSensitive), as text index version 3.  English stop words
  (MongoDB's list) are dropped for English.  Stemming uses the Snowball
  stemmer of the document's language (libstemmer, the library MongoDB uses,
  via ctypes) when the system has libstemmer.so.0d; without it words are not
  stemmed.  Query semantics as MongoDB's: terms are ORed, "quoted phrases"
  must all appear (and their words count as terms), -term / -"phrase" exclude,
  a query of negations only matches nothing.

  Score (MongoDB's own text index v2/v3 rule, fts_spec.cpp _scoreStringV2):
    for each indexed field with weight W (default 1) and each distinct stemmed
    term t occurring n times among the field's N non-stop-word tokens:
        freq(t)  = 1 + 1/2 + 1/4 + ... (n terms)
        coeff(t) = 0.5 * n / N + 0.5
        adj(t)   = 1.1 if the whole field value is exactly t, else 1
        field_score(t) += W * freq(t) * coeff(t) * adj(t)
    textScore(doc) = sum over the distinct query terms t of the summed
    field_score(t).  So more matched terms rank higher, repeated terms add with
    decreasing weight, and field weights multiply.

Geospatial
  Distances on a sphere of radius 6378100 m (MongoDB's).  2dsphere: GeoJSON
  (metres) and legacy pairs (radians with $nearSphere); 2d: legacy pairs with
  flat distances.  A document's location may be a GeoJSON Point/MultiPoint, a
  legacy pair, or an array of those (nearest one counts); for LineString /
  Polygon documents the vertices stand for the shape (approximation).
  $geoWithin: $centerSphere, $box, $polygon, $center (flat, on the
  longitude/latitude numbers), $geometry Polygon / MultiPolygon (geodesic
  edges, polygons smaller than a hemisphere).  $geoIntersects is not
  implemented (238).
"""

import copy
import ctypes
import ctypes.util
import math
import re
import unicodedata
from collections import OrderedDict

from mongomock import filtering as mm_filtering

EARTH_RADIUS_M = 6378100.0

STOP_WORDS_EN = set('''than during himself your theirs most same wouldn't at it here's their his an
out between doesn't not those only yourself mustn't and shouldn't him you'll which more shan't after
why up further over no its until them you don't few why's i've for ours some when's they've won't
herself but she he'd how's were how we've because aren't should our each once they'd where above
there or they'll be to are it's too itself what whom has they're had she'd these other when hasn't
by we'll having then against he's as is that isn't below could wasn't who's ourselves so any he
cannot weren't was my would we'd yourselves where's couldn't who didn't from i'm off have hers i am
themselves of before i'll here while what's myself ought me the into about this do can't a her
that's did very down you've we you're haven't on let's such they in with being doing she's yours
hadn't nor both does own again there's he'll i'd under you'd through we're she'll been all if'''.split())

LANGUAGES = {
    'danish': 'danish', 'da': 'danish', 'dutch': 'dutch', 'nl': 'dutch', 'english': 'english',
    'en': 'english', 'finnish': 'finnish', 'fi': 'finnish', 'french': 'french', 'fr': 'french',
    'german': 'german', 'de': 'german', 'hungarian': 'hungarian', 'hu': 'hungarian',
    'italian': 'italian', 'it': 'italian', 'norwegian': 'norwegian', 'nb': 'norwegian',
    'portuguese': 'portuguese', 'pt': 'portuguese', 'romanian': 'romanian', 'ro': 'romanian',
    'russian': 'russian', 'ru': 'russian', 'spanish': 'spanish', 'es': 'spanish',
    'swedish': 'swedish', 'sv': 'swedish', 'turkish': 'turkish', 'tr': 'turkish', 'none': 'none',
}

CmdError = None  # set by mockserver_common.py (mock_server.py may run as __main__)
_fmt_val = repr   # idem
TEXT_SCORE_FIELD = '__mh_textScore'


# ---------------------------------------------------------------------------
# Stemming (libstemmer through ctypes, when present)
# ---------------------------------------------------------------------------

class _Stemmers(object):
    def __init__(self):
        self.lib = None
        self.cache = {}
        for name in ('libstemmer.so.0d', ctypes.util.find_library('stemmer')):
            if not name:
                continue
            try:
                lib = ctypes.CDLL(name)
                lib.sb_stemmer_new.restype = ctypes.c_void_p
                lib.sb_stemmer_new.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
                lib.sb_stemmer_stem.restype = ctypes.c_void_p
                lib.sb_stemmer_stem.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
                lib.sb_stemmer_length.restype = ctypes.c_int
                lib.sb_stemmer_length.argtypes = [ctypes.c_void_p]
                self.lib = lib
                break
            except (OSError, AttributeError):
                continue

    def stem(self, lang, word):
        if self.lib is None or lang == 'none':
            return word
        st = self.cache.get(lang)
        if st is None:
            st = self.lib.sb_stemmer_new(lang.encode(), b'UTF_8') or 0
            self.cache[lang] = st
        if not st:
            return word
        b = word.encode('utf-8')
        p = self.lib.sb_stemmer_stem(st, b, len(b))
        n = self.lib.sb_stemmer_length(st)
        return ctypes.string_at(p, n).decode('utf-8', 'replace')


STEMMERS = _Stemmers()
_WORD_RE = re.compile(r"[\w']+", re.UNICODE)


def _fold(s, diacritics=False):
    if diacritics:
        return s
    return ''.join(ch for ch in unicodedata.normalize('NFD', s) if not unicodedata.combining(ch))


def words(text, case_sensitive=False, diacritic_sensitive=False):
    out = []
    for w in _WORD_RE.findall(text):
        w = w.strip("'")
        if not w or w.replace('_', '') == '':
            continue
        out.append(_fold(w if case_sensitive else w.lower(), diacritic_sensitive))
    return out


def terms_of(text, lang, case_sensitive=False, diacritic_sensitive=False):
    out = []
    for w in words(text, case_sensitive, diacritic_sensitive):
        if lang == 'english' and w.lower() in STOP_WORDS_EN:
            continue
        out.append(STEMMERS.stem(lang, w) if not case_sensitive else _stem_keep_case(lang, w))
    return out


def _stem_keep_case(lang, w):
    s = STEMMERS.stem(lang, w.lower())
    return w[:len(s)] if w.lower().startswith(s) else s


# ---------------------------------------------------------------------------
# Text index spec
# ---------------------------------------------------------------------------

def _values_at(doc, path):
    """All values at a dotted path (arrays are walked)."""
    cur = [doc]
    for part in path.split('.'):
        nxt = []
        for c in cur:
            if isinstance(c, dict):
                if part in c:
                    nxt.append(c[part])
            elif isinstance(c, list):
                if part.isdigit() and int(part) < len(c):
                    nxt.append(c[int(part)])
                for x in c:
                    if isinstance(x, dict) and part in x:
                        nxt.append(x[part])
        cur = nxt
    out = []
    for v in cur:
        if isinstance(v, list):
            out.extend(v)
        else:
            out.append(v)
    return out


def _all_strings(doc, prefix=''):
    if isinstance(doc, dict):
        for k, v in doc.items():
            for x in _all_strings(v, prefix + k + '.'):
                yield x
    elif isinstance(doc, list):
        for v in doc:
            for x in _all_strings(v, prefix):
                yield x
    elif isinstance(doc, str):
        yield prefix[:-1], doc


def text_fields(spec, doc):
    """(weight, string) of each indexed string of doc."""
    weights = spec['weights']
    out = []
    if '$**' in weights:
        for path, s in _all_strings(doc):
            out.append((float(weights.get(path, 1)), s))
        return out
    for field, w in weights.items():
        for v in _values_at(doc, field):
            if isinstance(v, str):
                out.append((float(w), v))
    return out


def doc_language(spec, doc):
    lang = doc.get(spec.get('language_override', 'language')) if isinstance(doc, dict) else None
    if isinstance(lang, str) and lang.lower() in LANGUAGES:
        return LANGUAGES[lang.lower()]
    return LANGUAGES.get(spec.get('default_language', 'english'), 'english')


def score_doc(spec, doc):
    """term -> score (MongoDB's _scoreStringV2 summed over the fields)."""
    lang = doc_language(spec, doc)
    scores = {}
    for weight, raw in text_fields(spec, doc):
        toks = terms_of(raw, lang)
        if not toks:
            continue
        counts = OrderedDict()
        for t in toks:
            counts[t] = counts.get(t, 0) + 1
        n_tokens = len(toks)
        for t, n in counts.items():
            freq = sum(1.0 / (2 ** i) for i in range(n))
            coeff = 0.5 * n / n_tokens + 0.5
            adj = 1.1 if len(raw) == len(t) and raw.lower() == t else 1.0
            scores[t] = scores.get(t, 0.0) + weight * freq * coeff * adj
    return scores


class TextQuery(object):
    def __init__(self, arg, spec):
        if not isinstance(arg, dict):
            raise CmdError(2, '$text expects an object')
        for k in arg:
            if k not in ('$search', '$language', '$caseSensitive', '$diacriticSensitive'):
                raise CmdError(2, 'extra fields in $text')
        search = arg.get('$search')
        if not isinstance(search, str):
            raise CmdError(2, '$search requires a string value')
        lang = arg.get('$language', spec.get('default_language', 'english'))
        if not isinstance(lang, str) or lang.lower() not in LANGUAGES:
            raise CmdError(17262, 'language override unsupported: %s' % (lang,))
        self.lang = LANGUAGES[lang.lower()]
        self.case = bool(arg.get('$caseSensitive', False))
        self.diac = bool(arg.get('$diacriticSensitive', False))
        self.spec = spec
        self.pos_terms, self.neg_terms, self.pos_phrases, self.neg_phrases = [], [], [], []
        i = 0
        n = len(search)
        while i < n:
            ch = search[i]
            if ch == '"' or (ch == '-' and i + 1 < n and search[i + 1] == '"' and
                             (i == 0 or search[i - 1].isspace())):
                neg = ch == '-'
                start = i + (2 if neg else 1)
                end = search.find('"', start)
                if end < 0:
                    end = n
                phrase = search[start:end]
                (self.neg_phrases if neg else self.pos_phrases).append(phrase)
                if not neg:
                    self.pos_terms += terms_of(phrase, self.lang, self.case, self.diac)
                i = end + 1
                continue
            if ch.isspace():
                i += 1
                continue
            j = i
            while j < n and not search[j].isspace() and search[j] != '"':
                j += 1
            tok = search[i:j]
            neg = tok.startswith('-') and (i == 0 or search[i - 1].isspace())
            ts = terms_of(tok[1:] if neg else tok, self.lang, self.case, self.diac)
            (self.neg_terms if neg else self.pos_terms).extend(ts)
            i = j
        self.pos_terms = list(OrderedDict.fromkeys(self.pos_terms))

    def _has_phrase(self, doc, phrase):
        for _, raw in text_fields(self.spec, doc):
            a, b = raw, phrase
            if not self.case:
                a, b = a.lower(), b.lower()
            if not self.diac:
                a, b = _fold(a), _fold(b)
            if b in a:
                return True
        return False

    def _doc_terms(self, doc):
        lang = doc_language(self.spec, doc)
        out = set()
        for _, raw in text_fields(self.spec, doc):
            out.update(terms_of(raw, lang, self.case, self.diac))
        return out

    def score(self, doc):
        """None if the document does not match, else its textScore."""
        if not self.pos_terms:
            return None
        dterms = self._doc_terms(doc)
        if not any(t in dterms for t in self.pos_terms):
            return None
        if any(t in dterms for t in self.neg_terms):
            return None
        if not all(self._has_phrase(doc, p) for p in self.pos_phrases):
            return None
        if any(self._has_phrase(doc, p) for p in self.neg_phrases):
            return None
        scores = score_doc(self.spec, doc)
        if self.case or self.diac:
            scores = {k.lower(): v for k, v in scores.items()}
            return sum(scores.get(_fold(t.lower()), 0.0) for t in self.pos_terms)
        return sum(scores.get(t, 0.0) for t in self.pos_terms)


# ---------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------

def _num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def legacy_pair(v):
    if isinstance(v, (list, tuple)) and len(v) >= 2 and _num(v[0]) and _num(v[1]):
        return float(v[0]), float(v[1])
    if isinstance(v, dict) and len(v) >= 2 and 'type' not in v:
        vals = list(v.values())
        if _num(vals[0]) and _num(vals[1]):
            return float(vals[0]), float(vals[1])
    return None


def geojson_point(v):
    if isinstance(v, dict) and v.get('type') == 'Point':
        c = v.get('coordinates')
        p = legacy_pair(c) if isinstance(c, (list, tuple)) else None
        if p is not None and -180 <= p[0] <= 180 and -90 <= p[1] <= 90:
            return p
    return None


def geojson_check(v):
    """None if v is valid GeoJSON (or a legacy pair), else why not."""
    if legacy_pair(v) is not None:
        p = legacy_pair(v)
        if not (-180 <= p[0] <= 180 and -90 <= p[1] <= 90):
            return 'longitude/latitude is out of bounds, lng: %s lat: %s' % p
        return None
    if not isinstance(v, dict) or 'type' not in v:
        return 'unknown GeoJSON type: %s' % (v,)
    t = v.get('type')
    c = v.get('coordinates')

    def pt_ok(p):
        q = legacy_pair(p)
        return q is not None and -180 <= q[0] <= 180 and -90 <= q[1] <= 90
    if t == 'Point':
        q = legacy_pair(c)
        if q is None:
            return 'Point must only contain numeric elements'
        return None if pt_ok(c) else 'longitude/latitude is out of bounds, lng: %s lat: %s' % q
    if t in ('MultiPoint', 'LineString'):
        if isinstance(c, list) and c and all(pt_ok(p) for p in c):
            if t == 'LineString' and len(c) < 2:
                return 'GeoJSON LineString must have at least 2 vertices'
            return None
        return '%s must only contain valid points' % t
    if t == 'Polygon':
        if isinstance(c, list) and c and all(isinstance(r, list) and len(r) >= 4 and all(pt_ok(p) for p in r)
                                             and list(r[0]) == list(r[-1]) for r in c):
            return None
        return 'Loop is not closed or has fewer than 4 vertices'
    if t in ('MultiLineString', 'MultiPolygon', 'GeometryCollection'):
        return None
    return 'unknown GeoJSON type: %s' % (v,)


def _geojson_vertices(v):
    t = v.get('type')
    c = v.get('coordinates')
    if t == 'Point':
        return [legacy_pair(c)]
    if t in ('MultiPoint', 'LineString'):
        return [legacy_pair(p) for p in c]
    if t in ('Polygon', 'MultiLineString'):
        return [legacy_pair(p) for r in c for p in r]
    if t == 'MultiPolygon':
        return [legacy_pair(p) for poly in c for r in poly for p in r]
    if t == 'GeometryCollection':
        return [p for g in v.get('geometries', []) for p in _geojson_vertices(g)]
    return []


def doc_locations(doc, field):
    """[(x, y, is_geojson, raw_value)] of the document's location(s) at field."""
    out = []
    vals = _values_at(doc, field)
    raw_vals = vals
    # an array of two numbers is one legacy pair, not two values
    direct = []
    cur = doc
    for part in field.split('.'):
        cur = cur.get(part) if isinstance(cur, dict) else None
    if legacy_pair(cur) is not None and not isinstance(cur, dict):
        direct = [cur]
    for v in (direct or raw_vals):
        lp = legacy_pair(v)
        if lp is not None:
            out.append((lp[0], lp[1], False, v))
        elif isinstance(v, dict) and 'type' in v:
            try:
                for p in _geojson_vertices(v):
                    if p is not None:
                        out.append((p[0], p[1], True, v))
            except (TypeError, AttributeError):
                pass
        elif isinstance(v, list):
            for x in v:
                lp = legacy_pair(x)
                if lp is not None:
                    out.append((lp[0], lp[1], False, x))
    return out


def sphere_angle(lng1, lat1, lng2, lat2):
    """Central angle in radians between two lng/lat points (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * math.asin(min(1.0, math.sqrt(a)))


def flat_dist(x1, y1, x2, y2):
    return math.hypot(x2 - x1, y2 - y1)


def _vec(lng, lat):
    lng, lat = math.radians(lng), math.radians(lat)
    return (math.cos(lat) * math.cos(lng), math.cos(lat) * math.sin(lng), math.sin(lat))


def _cross(a, b):
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _dot(a, b):
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _in_ring_sphere(pt, ring):
    """Winding-angle test with great-circle edges."""
    p = _vec(*pt)
    total = 0.0
    pts = [_vec(*legacy_pair(q)) for q in ring]
    for a, b in zip(pts, pts[1:]):
        ta = tuple(a[i] - _dot(a, p) * p[i] for i in range(3))
        tb = tuple(b[i] - _dot(b, p) * p[i] for i in range(3))
        if _dot(ta, ta) < 1e-30 or _dot(tb, tb) < 1e-30:
            return True  # on a vertex
        total += math.atan2(_dot(_cross(ta, tb), p), _dot(ta, tb))
    return abs(total) > math.pi


def _in_polygon_flat(pt, poly):
    x, y = pt
    inside = False
    n = len(poly)
    for i in range(n):
        x1, y1 = poly[i]
        x2, y2 = poly[(i + 1) % n]
        if (y1 > y) != (y2 > y):
            xi = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
            if x < xi:
                inside = not inside
        # on an edge counts as inside
        if min(x1, x2) <= x <= max(x1, x2) and min(y1, y2) <= y <= max(y1, y2) and \
                abs((x2 - x1) * (y - y1) - (y2 - y1) * (x - x1)) < 1e-12:
            return True
    return inside


def within_pred(spec):
    """A predicate (x, y, is_geojson) -> bool for a $geoWithin argument."""
    if not isinstance(spec, dict) or len(spec) != 1:
        raise CmdError(2, 'unknown geo specifier: %s' % (spec,))
    op, arg = next(iter(spec.items()))
    if op == '$centerSphere':
        c = legacy_pair(arg[0]) if isinstance(arg, list) and len(arg) == 2 else None
        if c is None or not _num(arg[1]) or arg[1] < 0:
            raise CmdError(2, 'malformed query, invalid $centerSphere')
        r = float(arg[1])
        return lambda x, y, g: sphere_angle(c[0], c[1], x, y) <= r
    if op == '$center':
        c = legacy_pair(arg[0]) if isinstance(arg, list) and len(arg) == 2 else None
        if c is None or not _num(arg[1]) or arg[1] < 0:
            raise CmdError(2, 'malformed query, invalid $center')
        r = float(arg[1])
        return lambda x, y, g: flat_dist(c[0], c[1], x, y) <= r
    if op == '$box':
        pts = [legacy_pair(p) for p in arg] if isinstance(arg, list) and len(arg) == 2 else [None]
        if None in pts:
            raise CmdError(2, 'malformed query, invalid $box')
        (x1, y1), (x2, y2) = pts
        lx, hx, ly, hy = min(x1, x2), max(x1, x2), min(y1, y2), max(y1, y2)
        return lambda x, y, g: lx <= x <= hx and ly <= y <= hy
    if op == '$polygon':
        pts = [legacy_pair(p) for p in arg] if isinstance(arg, list) else [None]
        if None in pts or len(pts) < 3:
            raise CmdError(2, 'Polygon must have at least 3 points')
        return lambda x, y, g: _in_polygon_flat((x, y), pts)
    if op == '$geometry':
        t = arg.get('type') if isinstance(arg, dict) else None
        err = geojson_check(arg) if t in ('Polygon', 'MultiPolygon') else 'not a Polygon'
        if err:
            raise CmdError(2, 'Malformed geo query: %s' % err)
        polys = [arg['coordinates']] if t == 'Polygon' else arg['coordinates']

        def inside(x, y, g):
            for poly in polys:
                if _in_ring_sphere((x, y), poly[0]) and not any(_in_ring_sphere((x, y), h) for h in poly[1:]):
                    return True
            return False
        return inside
    raise CmdError(2, 'unknown geo specifier: %s: %s' % (op, arg))


def parse_near(op, arg):
    """(point (x, y), is_geojson, maxDistance, minDistance) of a $near/$nearSphere value.
    For the legacy form, $maxDistance/$minDistance are siblings handled by the caller."""
    if isinstance(arg, dict) and '$geometry' in arg:
        p = geojson_point(arg['$geometry'])
        if p is None:
            raise CmdError(2, 'invalid point in geo near query $geometry argument: %s' % (arg['$geometry'],))
        for k in arg:
            if k not in ('$geometry', '$maxDistance', '$minDistance'):
                raise CmdError(2, 'invalid argument in geo near query: %s' % k)
        mx, mn = arg.get('$maxDistance'), arg.get('$minDistance')
        for v, name in ((mx, '$maxDistance'), (mn, '$minDistance')):
            if v is not None and (not _num(v) or v < 0):
                raise CmdError(2, '%s must be non-negative' % name)
        return p, True, mx, mn
    p = legacy_pair(arg)
    if p is None:
        raise CmdError(2, 'invalid argument in geo near query: %s' % (arg,))
    return p, False, None, None


# ---------------------------------------------------------------------------
# The engine's side: filters, find/count/aggregate helpers ($text, geo)
# ---------------------------------------------------------------------------

def _set_path(doc, path, value):
    parts = path.split('.')
    cur = doc
    for p in parts[:-1]:
        if not isinstance(cur.get(p), dict):
            cur[p] = OrderedDict()
        cur = cur[p]
    cur[parts[-1]] = value


class SearchMixin(object):
    """Engine methods for $text and geospatial queries (mock_server.Engine)."""

    # ---------------- $text / geo -----------------
    NO_GEO_INDEX = ('error processing query: planner returned error :: caused by :: '
                    'unable to find index for $geoNear query')

    def _special_indexes(self, db, cname, kind):
        """[(name, spec)] of the collection's indexes with a `kind` key ('text', '2d', '2dsphere')."""
        cstore = self.client._store[db][cname]
        return [(n, sp) for n, sp in cstore.indexes.items() if any(v == kind for _, v in sp['key'])]

    def _text_spec(self, db, cname):
        ix = self._special_indexes(db, cname, 'text')
        if not ix:
            raise CmdError(27, 'text index required for $text query')
        return ix[0][1]

    def _geo_index_types(self, db, cname, field):
        cstore = self.client._store[db][cname]
        return {v for sp in cstore.indexes.values() for k, v in sp['key']
                if k == field and v in ('2d', '2dsphere')}

    def _prepare_filter(self, db, cname, flt, where='find'):
        """Splits off $text and $near/$nearSphere (top level or in a top-level
        $and) and turns each $geoWithin into an _id list.  Returns
        (rest_filter, TextQuery or None, near or None)."""
        state = {'text': None, 'near': None}
        cstore = self.client._store[db][cname]

        def geo_within_ids(field, arg):
            pred = within_pred(arg)
            ids = []
            for d in list(cstore._documents.values()):
                locs = doc_locations(d, field)
                if locs and any(pred(x, y, g) for x, y, g, _ in locs):
                    ids.append(d['_id'])
            return {'_id': {'$in': ids}}

        def walk(x, top):
            if isinstance(x, list):
                return [walk(v, False) for v in x]
            if not isinstance(x, dict):
                return x
            parts = []
            out = OrderedDict()
            for k, v in x.items():
                if k == '$text':
                    if not top:
                        raise CmdError(2, '$text is not allowed in this context' if where != 'or' else
                                       'planner returned error :: caused by :: Failed to produce a solution '
                                       'for TEXT under OR')
                    if state['text'] is not None:
                        raise CmdError(2, 'Too many text expressions')
                    state['text'] = TextQuery(v, self._text_spec(db, cname))
                    continue
                if k == '$and' and isinstance(v, list):
                    out[k] = [walk(c, top) for c in v]
                    continue
                if k in ('$or', '$nor') and isinstance(v, list):
                    out[k] = [walk(c, False) for c in v]
                    continue
                if not k.startswith('$') and isinstance(v, dict) and any(
                        op in v for op in ('$near', '$nearSphere', '$geoWithin', '$within', '$geoIntersects')):
                    rest = OrderedDict()
                    near_op = None
                    for op, arg in v.items():
                        if op in ('$geoWithin', '$within'):
                            parts.append(geo_within_ids(k, arg))
                        elif op == '$geoIntersects':
                            raise CmdError(238, 'mock server does not implement $geoIntersects')
                        elif op in ('$near', '$nearSphere'):
                            near_op = op
                        elif op in ('$maxDistance', '$minDistance'):
                            pass
                        else:
                            rest[op] = arg
                    if near_op is not None:
                        if where == 'aggregate':
                            if self.version >= (5, 0):
                                raise CmdError(5626500, '$geoNear, $near, and $nearSphere are not allowed in '
                                               'this context, as these operators require sorting geospatial '
                                               'data. If you do not need sort, consider using $geoWithin '
                                               'instead.')
                            raise CmdError(2, '$geoNear, $near, and $nearSphere are not allowed in this context')
                        if not top or state['near'] is not None:
                            raise CmdError(2, 'geo near accepts just one argument when querying for a GeoJSON '
                                           'point. Extra field found' if state['near'] else
                                           'geoNear must be top-level expr')
                        state['near'] = self._parse_near(db, cname, k, near_op, v)
                    if rest:
                        parts.append({k: rest})
                    continue
                out[k] = walk(v, False) if k.startswith('$') else v
            if parts:
                if out:
                    parts.insert(0, out)
                return {'$and': parts} if len(parts) > 1 else parts[0]
            return out
        rest = walk(flt, True)
        return rest, state['text'], state['near']

    def _parse_near(self, db, cname, field, op, v):
        point, geojson, mx, mn = parse_near(op, v[op])
        if not geojson:
            mx, mn = v.get('$maxDistance'), v.get('$minDistance')
        types = self._geo_index_types(db, cname, field)
        if geojson:
            if '2dsphere' not in types:
                raise CmdError(291, self.NO_GEO_INDEX)
            mode = 'meters'
        elif op == '$nearSphere':
            if not types:
                raise CmdError(291, self.NO_GEO_INDEX)
            mode = 'radians'
        else:
            if '2d' not in types:
                raise CmdError(291, self.NO_GEO_INDEX)
            mode = 'flat'
        for val, name in ((mx, '$maxDistance'), (mn, '$minDistance')):
            if val is not None and (not isinstance(val, (int, float)) or isinstance(val, bool) or val < 0):
                raise CmdError(2, '%s must be a non-negative number' % name)
        return dict(field=field, point=point, mode=mode, max=mx, min=mn)

    @staticmethod
    def _distance(near, doc):
        """Smallest distance from near's point to a location of doc (None: no location)."""
        x0, y0 = near['point']
        best = None
        for x, y, g, raw in doc_locations(doc, near['field']):
            if near['mode'] == 'flat':
                if g:
                    continue
                d = flat_dist(x0, y0, x, y)
            else:
                d = sphere_angle(x0, y0, x, y)
                if near['mode'] == 'meters':
                    d *= EARTH_RADIUS_M
            if best is None or d < best[0]:
                best = (d, raw)
        return best

    def _special_docs(self, db, cname, rest, textq, near):
        """[(doc, score, (distance, location))] of the documents that match."""
        coll = self.client[db][cname]
        out = []
        for d in coll.find(rest):
            sc = None
            if textq is not None:
                sc = textq.score(d)
                if sc is None:
                    continue
            dist = None
            if near is not None:
                dist = self._distance(near, d)
                if dist is None or (near['max'] is not None and dist[0] > near['max']) or \
                        (near['min'] is not None and dist[0] < near['min']):
                    continue
            out.append((d, sc, dist))
        if near is not None:
            out.sort(key=lambda t: t[2][0])
        return out

    @staticmethod
    def _is_meta(v):
        return isinstance(v, dict) and list(v.keys()) == ['$meta']

    def _check_meta(self, v, textq):
        if v.get('$meta') != 'textScore':
            if v.get('$meta') in ('indexKey', 'recordId', 'sortKey', 'searchScore', 'searchHighlights',
                                  'geoNearDistance', 'geoNearPoint', 'randVal'):
                raise CmdError(238, "mock server does not support {$meta: '%s'}" % v['$meta'])
            raise CmdError(17308, 'Unsupported argument to $meta: %s' % v.get('$meta'))
        if textq is None:
            raise CmdError(40218, 'query requires text score metadata, but it is not available')

    def _sort_items(self, items, sort, textq):
        """Sorts [(doc, score, dist)] by a find sort spec that may hold {$meta: 'textScore'}."""
        for key, direction in reversed(list(sort.items())):
            if self._is_meta(direction):
                self._check_meta(direction, textq)
                items.sort(key=lambda t: t[1], reverse=True)
            else:
                if direction not in (1, -1):
                    raise CmdError(15974, 'Illegal key in $sort specification: %s: %s' % (key, direction))
                items.sort(key=lambda t: mm_filtering.resolve_sort_key(key, t[0]), reverse=direction < 0)
        return items

    def _project_items(self, coll, items, proj, textq):
        proj = dict(proj or {})
        metas = [(k, v) for k, v in proj.items() if self._is_meta(v)]
        for k, v in metas:
            self._check_meta(v, textq)
            del proj[k]
        out = []
        for d, sc, dist in items:
            doc = coll._copy_only_fields(d, proj, OrderedDict) if proj else copy.deepcopy(d)
            for k, _ in metas:
                doc[k] = sc
            out.append(doc)
        return out

    def _meta_exprs(self, spec):
        def conv(v):
            if self._is_meta(v):
                if v['$meta'] != 'textScore':
                    self._check_meta(v, True)
                return '$' + TEXT_SCORE_FIELD
            if isinstance(v, dict):
                return OrderedDict((k, conv(x)) for k, x in v.items())
            if isinstance(v, list):
                return [conv(x) for x in v]
            return v
        return conv(spec)

    def _check_later_match(self, flt):
        def walk(x):
            if isinstance(x, dict):
                for k, v in x.items():
                    if k == '$text':
                        raise CmdError(17313, '$match with $text is only allowed as the first pipeline stage')
                    if k in ('$near', '$nearSphere'):
                        if self.version >= (5, 0):
                            raise CmdError(5626500, '$geoNear, $near, and $nearSphere are not allowed in this '
                                           'context, as these operators require sorting geospatial data. If '
                                           'you do not need sort, consider using $geoWithin instead.')
                        raise CmdError(2, '$geoNear, $near, and $nearSphere are not allowed in this context')
                    if k in ('$geoWithin', '$within', '$geoIntersects'):
                        raise CmdError(238, 'mock server supports %s only in a first $match stage' % k)
                    walk(v)
            elif isinstance(x, list):
                for v in x:
                    walk(v)
        walk(flt)

    def _geo_near_stage(self, db, cname, arg):
        """Documents of a first $geoNear stage, nearest first."""
        if not isinstance(arg, dict):
            raise CmdError(10065, 'invalid parameter: expected an object ($geoNear)')
        known = {'near', 'distanceField', 'spherical', 'maxDistance', 'minDistance', 'query', 'key',
                 'distanceMultiplier', 'includeLocs', 'uniqueDocs'}
        for k in arg:
            if k in ('num', 'limit'):
                raise CmdError(50858 if k == 'num' else 50857, '$geoNear no longer supports the \'%s\' parameter. '
                               'Use a $limit stage instead.' % k)
            if k not in known:
                raise CmdError(40415 if self.version >= (5, 0) else 16605,
                               'Unknown argument to $geoNear: %s' % k)
        if 'near' not in arg:
            raise CmdError(5860400 if self.version >= (5, 0) else 40410,
                           "$geoNear requires a 'near' argument")
        df = arg.get('distanceField')
        if not isinstance(df, str):
            raise CmdError(16606, "$geoNear requires a 'distanceField' option as a String")
        ns = '%s.%s' % (db, cname)
        cstore = self.client._store[db][cname]
        geo = [(k, v) for sp in cstore.indexes.values() for k, v in sp['key'] if v in ('2d', '2dsphere')]
        key = arg.get('key')
        if key is not None:
            if not isinstance(key, str) or not key:
                raise CmdError(2, '$geoNear parameter \'key\' must be of type string but found type: %s'
                               % type(key).__name__)
            types = {v for k, v in geo if k == key}
            if not types:
                raise CmdError(27, 'no geo indices for $geoNear query with key %s' % key)
            field = key
        else:
            two_d = [k for k, v in geo if v == '2d']
            sph = [k for k, v in geo if v == '2dsphere']
            if len(two_d) > 1:
                raise CmdError(27, 'There is more than one 2d index on %s; unsure which to use for $geoNear' % ns)
            if two_d:
                field, types = two_d[0], {'2d'}
            elif len(sph) > 1:
                raise CmdError(27, 'There is more than one 2dsphere index on %s; unsure which to use for $geoNear'
                               % ns)
            elif sph:
                field, types = sph[0], {'2dsphere'}
            else:
                raise CmdError(27, '$geoNear requires a 2d or 2dsphere index, but none were found')
        near = arg['near']
        gp = geojson_point(near) if isinstance(near, dict) and 'type' in near else None
        if gp is not None:
            if '2dsphere' not in types:
                raise CmdError(291, self.NO_GEO_INDEX)
            point, mode = gp, 'meters'
        else:
            point = legacy_pair(near)
            if point is None:
                raise CmdError(2, 'invalid argument in geo near query: near: %s' % _fmt_val(near))
            mode = 'radians' if (arg.get('spherical') or '2d' not in types) else 'flat'
        spec = dict(field=field, point=point, mode=mode, max=arg.get('maxDistance'), min=arg.get('minDistance'))
        for n in ('max', 'min'):
            v = spec[n]
            if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0):
                raise CmdError(2, '%sDistance must be a non-negative number' % n)
        q = arg.get('query') or {}
        q, textq, near2 = self._prepare_filter(db, cname, q, 'aggregate')
        if textq is not None:
            raise CmdError(2, '$geoNear query cannot contain $text')
        mult = arg.get('distanceMultiplier', 1)
        out = []
        for d, _, (dist, loc) in self._special_docs(db, cname, q, None, spec):
            doc = copy.deepcopy(d)
            _set_path(doc, df, dist * mult)
            if isinstance(arg.get('includeLocs'), str):
                _set_path(doc, arg['includeLocs'], copy.deepcopy(loc))
            out.append(doc)
        return out

