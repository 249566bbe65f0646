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

import ctypes
import ctypes.util
import math
import re
import unicodedata
from collections import OrderedDict

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

CmdError = None  # set by mock_server.py


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
