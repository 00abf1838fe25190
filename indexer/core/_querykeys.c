/* The canonical keys of a bulk line from the request's memo, in C (indexer/core/matchkeys.py).
 *
 * `canonical_keys(fields, memo=...)` runs once per line of a bulk request, and most of its
 * cost was interpreter: three memo reads, a NIR normalised, a few f-strings; and for a date
 * or name not seen yet, identity's regular expressions. MemoKeys(QueryName).keys(fields,
 * memo, today) does that fast path here: the date and names read from the memo's tables
 * (plain ASCII ones not seen yet normalised here, by identity's rules, and remembered
 * there as QueryMemo would), the NIR normalised as identity.normalize_nir does, the keys
 * made as matchkeys._name_keys makes them. Whenever Python must decide (an error, a blank,
 * a value that is not a str, not ASCII, too long, or a date too near today to be sure) it
 * returns None, having changed nothing, and the Python path answers: these are the rules
 * of docs/design.md §3 written twice, and tests/test_querykeys.py holds the two equal.
 *
 * It keeps no value between calls (only the clock's date, read once a minute), never
 * quotes one, and raises only when called wrongly or out of memory.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <string.h>
#include <time.h>

/* Longer names and dates are left to Python (a name of the synthetic members is under 40). */
#define MAX_TEXT 128

typedef struct {
    const char *text;
    Py_ssize_t length;
} Span;

#define SPAN(literal) ((Span){literal, sizeof literal - 1})

/* The field and attribute names, interned once. */
static PyObject *s_nir, *s_birth_date, *s_last_name, *s_first_name;
static PyObject *s_birth_dates, *s_last_names, *s_first_names, *s_size, *s_max_entries,
    *s_room;

/* A str's characters when it is an exact, ASCII str. */
static int
ascii_span(PyObject *value, Span *span)
{
    if (!PyUnicode_CheckExact(value) || !PyUnicode_IS_ASCII(value))
        return 0;
    span->text = (const char *)PyUnicode_1BYTE_DATA(value);
    span->length = PyUnicode_GET_LENGTH(value);
    return 1;
}

static int
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int
is_letter(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static char
upper(char c)
{
    return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

/* The pieces joined by '|' as a new str (all ASCII). */
static PyObject *
joined_key(const Span *pieces, int n)
{
    Py_ssize_t length = n - 1;
    for (int i = 0; i < n; i++)
        length += pieces[i].length;
    PyObject *key = PyUnicode_New(length, 127);
    if (key == NULL)
        return NULL;
    char *out = (char *)PyUnicode_1BYTE_DATA(key);
    for (int i = 0; i < n; i++) {
        if (i > 0)
            *out++ = '|';
        memcpy(out, pieces[i].text, (size_t)pieces[i].length);
        out += pieces[i].length;
    }
    return key;
}

/* --- NIR (identity.normalize_nir) ------------------------------------------------------ */

static int
valid_nir_month(int month)
{
    return (month >= 1 && month <= 12) || (month >= 20 && month <= 42) || month >= 50;
}

/* The 15 characters of an ASCII NIR into `out`, as identity.normalize_nir gives them:
 * separators (blanks, '-', '.') removed, 2a/2b upper-cased, the key computed for 13
 * characters and checked for 15 (2A counted as 19 and 2B as 18, as INSEE does). 0 for
 * anything else, valid or not: Python decides. */
static int
nir_normal(PyObject *raw, char out[15])
{
    Span text;
    if (!ascii_span(raw, &text))
        return 0;
    int n = 0;
    for (Py_ssize_t i = 0; i < text.length; i++) {
        char c = text.text[i];
        if (c == ' ' || c == '.' || c == '-' || c == '\t' || c == '\r' || c == '\n')
            continue;
        c = upper(c);
        if (n == 15 || !(is_digit(c) || c == 'A' || c == 'B'))
            return 0;
        out[n++] = c;
    }
    if (n != 13 && n != 15)
        return 0;
    switch (out[0]) {
    case '1': case '2': case '3': case '4': case '7': case '8':
        break;
    default:
        return 0;
    }
    /* [1-9][0-9]{4}(?:[0-9]{2}|2[AB])[0-9]{6}(?:[0-9]{2})? */
    int corsica = out[5] == '2' && (out[6] == 'A' || out[6] == 'B');
    for (int i = 1; i < n; i++) {
        if ((i == 5 || i == 6) && corsica)
            continue;
        if (!is_digit(out[i]))
            return 0;
    }
    if (!valid_nir_month((out[3] - '0') * 10 + (out[4] - '0')))
        return 0;
    unsigned long long number = 0;
    for (int i = 0; i < 13; i++) {
        int digit = out[i] - '0';
        if (corsica && i == 5)
            digit = 1;
        else if (corsica && i == 6)
            digit = out[6] == 'A' ? 9 : 8;
        number = number * 10 + (unsigned long long)digit;
    }
    int key = 97 - (int)(number % 97);
    char tens = (char)('0' + key / 10), units = (char)('0' + key % 10);
    if (n == 13) {
        out[13] = tens;
        out[14] = units;
        return 1;
    }
    return out[13] == tens && out[14] == units;
}

/* --- dates of birth (identity.normalize_birth_date, query=True) ------------------------ */

static int
leap(int year)
{
    return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

static int
days_in_month(int year, int month)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return month == 2 && leap(year) ? 29 : days[month - 1];
}

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static long
day_number(int year, int month, int day)
{
    long y = month <= 2 ? year - 1 : year;
    long era = (y >= 0 ? y : y - 399) / 400;
    long year_of_era = y - era * 400;
    long day_of_year = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
    long day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    return era * 146097 + day_of_era - 719468;
}

/* The local date's day number, from the clock read at most once a minute (localtime_r
 * costs more than the rest of a date's check); 0 when the clock cannot be read. */
static int
clock_day(long *day)
{
    static time_t minute = -1;
    static long today;
    time_t now = time(NULL);
    if (now == (time_t)-1)
        return 0;
    if (now / 60 != minute) {
        struct tm local;
        if (localtime_r(&now, &local) == NULL)
            return 0;
        today = day_number(local.tm_year + 1900, local.tm_mon + 1, local.tm_mday);
        minute = now / 60;
    }
    *day = today;
    return 1;
}

/* The digits at `*at` (at most `most`) as a number; how many in *count. */
static int
digits(const char *text, Py_ssize_t length, Py_ssize_t *at, int most, int *count)
{
    int value = 0;
    *count = 0;
    while (*at < length && is_digit(text[*at]) && *count <= most) {
        value = value * 10 + (text[*at] - '0');
        (*at)++;
        (*count)++;
    }
    return value;
}

static int
is_space(char c) /* what str.strip() strips, in ASCII */
{
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= '\x1c' && c <= '\x1f');
}

/* YYYY-MM-DD of an ASCII date of birth into `out`, as normalize_birth_date gives it for
 * a query: DD/MM/YYYY (or '.', '-') or YYYY-MM-DD, day or month 00 kept, the date real,
 * its earliest day from 1880 to `today` (a date, or None: the local date). 0 for any
 * other, and when `today` is None for a date within two days of the clock's (identity
 * reads the clock once a minute: near midnight the two could differ). */
static int
date_normal(PyObject *raw, PyObject *today, char out[10])
{
    Span text;
    if (!ascii_span(raw, &text))
        return 0;
    Py_ssize_t start = 0, end = text.length;
    while (start < end && is_space(text.text[start]))
        start++;
    while (end > start && is_space(text.text[end - 1]))
        end--;
    if (end - start > 10)
        return 0;
    const char *t = text.text;
    Py_ssize_t at = start;
    int a_count, b_count, c_count;
    int a = digits(t, end, &at, 4, &a_count);
    if (at >= end)
        return 0;
    char first_separator = t[at++];
    int b = digits(t, end, &at, 2, &b_count);
    if (at >= end)
        return 0;
    char second_separator = t[at++];
    int c = digits(t, end, &at, 4, &c_count);
    if (at != end)
        return 0;
    int year, month, day;
    if (a_count == 4 && first_separator == '-' && second_separator == '-'
        && b_count >= 1 && b_count <= 2 && c_count >= 1 && c_count <= 2) {
        year = a, month = b, day = c; /* (\d{4})-(\d{1,2})-(\d{1,2}) */
    } else if (a_count >= 1 && a_count <= 2 && b_count >= 1 && b_count <= 2 && c_count == 4
               && first_separator == second_separator
               && (first_separator == '/' || first_separator == '.'
                   || first_separator == '-')) {
        day = a, month = b, year = c; /* (\d{1,2})([/.-])(\d{1,2})\2(\d{4}) */
    } else
        return 0;
    if (year < 1880 || month > 12 || day > 31)
        return 0;
    if (month && day && day > days_in_month(year, month))
        return 0;
    long earliest = day_number(year, month ? month : 1, day ? day : 1);
    if (today == Py_None) {
        long clock;
        if (!clock_day(&clock) || earliest > clock - 2)
            return 0;
    } else {
        if (!PyDate_CheckExact(today))
            return 0;
        if (earliest > day_number(PyDateTime_GET_YEAR(today), PyDateTime_GET_MONTH(today),
                                  PyDateTime_GET_DAY(today)))
            return 0;
    }
    const int fields[3] = {year, month, day}, widths[3] = {4, 2, 2};
    for (int f = 0, at = 0; f < 3; at += widths[f++] + 1) { /* %04d-%02d-%02d */
        for (int i = widths[f] - 1, value = fields[f]; i >= 0; i--, value /= 10)
            out[at + i] = (char)('0' + value % 10);
        if (f < 2)
            out[at + widths[f]] = '-';
    }
    return 1;
}


/* --- names (identity.fold_name, name_parts, read_given_names) -------------------------- */

/* A name's letters, upper-cased: its fold (every separator folds away). */
typedef struct {
    char text[MAX_TEXT];
    Py_ssize_t length;
} Letters;

/* Pieces of the letters, as [start, end) offsets: words, given names, parts. A name cut
 * in two at each place between its words gives at most twice as many parts as letters. */
typedef struct {
    Py_ssize_t starts[2 * MAX_TEXT], ends[2 * MAX_TEXT];
    int count;
} Pieces;

static int
in_set(const char *set, char c)
{
    return c != '\0' && strchr(set, c) != NULL;
}

/* Whether every character is a letter or in `others`. */
static int
only(Span text, const char *others)
{
    for (Py_ssize_t i = 0; i < text.length; i++)
        if (!is_letter(text.text[i]) && !in_set(others, text.text[i]))
            return 0;
    return 1;
}

static int
is_particle(const char *word, Py_ssize_t length)
{
    static const char *const particles[] = {"D", "L", "DE", "DU", "DES", "LA", "LE", "LES",
                                            "DEL", "DELA", "DI", "DA", "VAN", "VON"};
    for (size_t i = 0; i < sizeof particles / sizeof *particles; i++)
        if ((Py_ssize_t)strlen(particles[i]) == length
            && memcmp(particles[i], word, (size_t)length) == 0)
            return 1;
    return 0;
}

/* The folded words of `text` as identity._folded_words gives them (cut at `cuts`, each
 * particle glued to the word after it, trailing ones to the last word), added to `words`;
 * its letters added to `letters`. Every character is a letter, a cut or one of "'`."
 * (which fold away): the caller has checked. A word is then always a run of the
 * letters, and the words of a text that has one cover all its letters. */
static void
folded_words(Span text, const char *cuts, Letters *letters, Pieces *words)
{
    Py_ssize_t word_start = letters->length, token_start = letters->length;
    int first_word = words->count;
    for (Py_ssize_t i = 0; i <= text.length; i++) {
        if (i == text.length || in_set(cuts, text.text[i])) {
            Py_ssize_t token_end = letters->length;
            if (token_end > token_start
                && !is_particle(letters->text + token_start, token_end - token_start)) {
                words->starts[words->count] = word_start;
                words->ends[words->count++] = token_end;
                word_start = token_end;
            }
            token_start = token_end;
        } else if (is_letter(text.text[i]))
            letters->text[letters->length++] = upper(text.text[i]);
    }
    if (words->count > first_word) /* trailing particles join the last word */
        words->ends[words->count - 1] = letters->length;
}

static int
same_letters(const Letters *letters, Py_ssize_t start, Py_ssize_t end, Py_ssize_t other_start,
             Py_ssize_t other_end)
{
    return end - start == other_end - other_start
           && memcmp(letters->text + start, letters->text + other_start,
                     (size_t)(end - start)) == 0;
}

/* Adds [start, end) of the letters to `kept` unless it holds them already (the order of
 * dict.fromkeys). */
static void
keep_once(const Letters *letters, Pieces *kept, Py_ssize_t start, Py_ssize_t end)
{
    for (int i = 0; i < kept->count; i++)
        if (same_letters(letters, kept->starts[i], kept->ends[i], start, end))
            return;
    kept->starts[kept->count] = start;
    kept->ends[kept->count++] = end;
}

static PyObject *
letters_str(const Letters *letters, Py_ssize_t start, Py_ssize_t end)
{
    return PyUnicode_FromStringAndSize(letters->text + start, end - start);
}

/* The pieces of the letters as a tuple of str. */
static PyObject *
pieces_tuple(const Letters *letters, const Pieces *pieces)
{
    PyObject *tuple = PyTuple_New(pieces->count);
    if (tuple == NULL)
        return NULL;
    for (int i = 0; i < pieces->count; i++) {
        PyObject *piece = letters_str(letters, pieces->starts[i], pieces->ends[i]);
        if (piece == NULL) {
            Py_DECREF(tuple);
            return NULL;
        }
        PyTuple_SET_ITEM(tuple, i, piece);
    }
    return tuple;
}

/* QueryName(first, whole, parts), as tuple.__new__ makes it; takes the three references
 * (NULL when making one failed). */
static PyObject *
query_name(PyObject *type, PyObject *first, PyObject *whole, PyObject *parts)
{
    PyObject *name = NULL;
    if (first != NULL && whole != NULL && parts != NULL) {
        PyObject *items = PyTuple_Pack(3, first, whole, parts);
        PyObject *args = items != NULL ? PyTuple_Pack(1, items) : NULL;
        if (args != NULL)
            name = PyTuple_Type.tp_new((PyTypeObject *)type, args, NULL);
        Py_XDECREF(items);
        Py_XDECREF(args);
    }
    Py_XDECREF(first);
    Py_XDECREF(whole);
    Py_XDECREF(parts);
    return name;
}

/* matchkeys.query_last_name of an ASCII last name: (fold, fold, name_parts). NULL
 * without an exception for anything else (Python decides). */
static PyObject *
last_name_normal(PyObject *type, PyObject *raw)
{
    Span text;
    if (!ascii_span(raw, &text) || text.length > MAX_TEXT || !only(text, " \t\r\n-'`."))
        return NULL;
    Letters letters = {.length = 0};
    Pieces words = {.count = 0}, kept = {.count = 0};
    folded_words(text, " \t\r\n-", &letters, &words);
    if (letters.length == 0)
        return NULL; /* "required" */
    /* name_parts: the name cut in two at each place between words, either side. */
    for (int cut = 1; cut < words.count; cut++)
        if (words.ends[cut - 1] > 1)
            keep_once(&letters, &kept, 0, words.ends[cut - 1]);
    for (int cut = 1; cut < words.count; cut++)
        if (letters.length - words.starts[cut] > 1)
            keep_once(&letters, &kept, words.starts[cut], letters.length);
    if (kept.count < 2)
        kept.count = 0;
    PyObject *folded = letters_str(&letters, 0, letters.length);
    Py_XINCREF(folded);
    return query_name(type, folded, folded, pieces_tuple(&letters, &kept));
}

/* matchkeys.query_first_name of an ASCII first-names field (identity.read_given_names:
 * given names cut at blanks, commas and semicolons, each a composite of the words
 * between its hyphens). NULL without an exception for anything else. */
static PyObject *
first_name_normal(PyObject *type, PyObject *raw)
{
    Span text;
    if (!ascii_span(raw, &text) || text.length > MAX_TEXT
        || !only(text, " \t\r\n,;-'`."))
        return NULL;
    Letters letters = {.length = 0};
    Pieces names = {.count = 0}, parts = {.count = 0}, others = {.count = 0};
    int first_composite = 0;
    Py_ssize_t token_start = 0;
    for (Py_ssize_t i = 0; i <= text.length; i++) {
        if (i < text.length && !in_set(" \t\r\n,;", text.text[i]))
            continue;
        if (i > token_start) {
            Span token = {text.text + token_start, i - token_start};
            Py_ssize_t start = letters.length;
            Pieces words = {.count = 0};
            folded_words(token, "-", &letters, &words);
            if (letters.length == start)
                return NULL; /* a given name that folds to nothing: "required" */
            names.starts[names.count] = start;
            names.ends[names.count++] = letters.length;
            if (words.count > 1) /* a composite's parts: its words of two letters or more */
                for (int w = 0; w < words.count; w++)
                    if (words.ends[w] - words.starts[w] > 1) {
                        parts.starts[parts.count] = words.starts[w];
                        parts.ends[parts.count++] = words.ends[w];
                        first_composite |= names.count == 1;
                    }
        }
        token_start = i + 1;
    }
    if (names.count == 0)
        return NULL; /* "required" */
    PyObject *first = letters_str(&letters, names.starts[0], names.ends[0]);
    if (names.count == 1 && !first_composite) {
        Py_XINCREF(first);
        return query_name(type, first, first, PyTuple_New(0));
    }
    /* The other given names, then the parts of the composites, each once, in this order;
     * neither the first given name nor all of them together. */
    for (int n = 1; n < names.count; n++)
        keep_once(&letters, &others, names.starts[n], names.ends[n]);
    for (int p = 0; p < parts.count; p++)
        keep_once(&letters, &others, parts.starts[p], parts.ends[p]);
    int count = 0;
    for (int o = 0; o < others.count; o++) {
        Py_ssize_t start = others.starts[o], end = others.ends[o];
        if (same_letters(&letters, start, end, names.starts[0], names.ends[0])
            || same_letters(&letters, start, end, 0, letters.length))
            continue;
        others.starts[count] = start;
        others.ends[count++] = end;
    }
    others.count = count;
    return query_name(type, first, letters_str(&letters, 0, letters.length),
                      pieces_tuple(&letters, &others));
}

/* --- the memo ------------------------------------------------------------------------- */

/* A remembered name, QueryName(first, whole, parts), read as ASCII spans; 0 when it is
 * not one (the memo's tables are plain attributes: checked, never trusted). */
typedef struct {
    Span first, whole;
    PyObject *parts; /* a tuple of ASCII str */
} Name;

static int
read_name(PyObject *value, Name *name)
{
    if (!PyTuple_Check(value) || PyTuple_GET_SIZE(value) != 3
        || !ascii_span(PyTuple_GET_ITEM(value, 0), &name->first)
        || !ascii_span(PyTuple_GET_ITEM(value, 1), &name->whole))
        return 0;
    name->parts = PyTuple_GET_ITEM(value, 2);
    if (!PyTuple_CheckExact(name->parts))
        return 0;
    Span part;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(name->parts); i++)
        if (!ascii_span(PyTuple_GET_ITEM(name->parts, i), &part))
            return 0;
    return 1;
}

static Span
part_span(PyObject *parts, Py_ssize_t i)
{
    PyObject *part = PyTuple_GET_ITEM(parts, i);
    return (Span){(const char *)PyUnicode_1BYTE_DATA(part), PyUnicode_GET_LENGTH(part)};
}

/* The keys of a line, strong (when `nir` is given) then weak then part, as
 * matchkeys._name_keys makes them: weak|last|first|date, weak|last|whole|date when the
 * given names are more than the first, part|last|part|date for each part of the first
 * names, part|part|first|date for each part of the last name. */
static PyObject *
line_keys(const char *nir, Span date, const Name *last, const Name *first)
{
    int named = last != NULL;
    int whole = named && (first->whole.length != first->first.length
                          || memcmp(first->whole.text, first->first.text,
                                    (size_t)first->first.length) != 0);
    Py_ssize_t first_parts = named ? PyTuple_GET_SIZE(first->parts) : 0;
    Py_ssize_t last_parts = named ? PyTuple_GET_SIZE(last->parts) : 0;
    Py_ssize_t count = (nir != NULL) + named + whole + first_parts + last_parts;
    PyObject *keys = PyTuple_New(count), *key;
    if (keys == NULL)
        return NULL;
    Py_ssize_t at = 0;
    if (nir != NULL) {
        Span pieces[3] = {SPAN("strong"), {nir, 15}, date};
        if ((key = joined_key(pieces, 3)) == NULL)
            goto fail;
        PyTuple_SET_ITEM(keys, at++, key);
    }
    if (!named)
        return keys;
    Span pieces[4] = {SPAN("weak"), last->first, first->first, date};
    if ((key = joined_key(pieces, 4)) == NULL)
        goto fail;
    PyTuple_SET_ITEM(keys, at++, key);
    if (whole) {
        pieces[2] = first->whole;
        if ((key = joined_key(pieces, 4)) == NULL)
            goto fail;
        PyTuple_SET_ITEM(keys, at++, key);
    }
    pieces[0] = SPAN("part");
    for (Py_ssize_t i = 0; i < first_parts; i++) {
        pieces[1] = last->first;
        pieces[2] = part_span(first->parts, i);
        if ((key = joined_key(pieces, 4)) == NULL)
            goto fail;
        PyTuple_SET_ITEM(keys, at++, key);
    }
    for (Py_ssize_t i = 0; i < last_parts; i++) {
        pieces[1] = part_span(last->parts, i);
        pieces[2] = first->first;
        if ((key = joined_key(pieces, 4)) == NULL)
            goto fail;
        PyTuple_SET_ITEM(keys, at++, key);
    }
    return keys;
fail:
    Py_DECREF(keys);
    return NULL;
}

/* table[raw] = value after QueryMemo._room(): the memo counts it, and starts again
 * (its own _room) when full. 0, or -1 with an exception set. */
static int
remember(PyObject *memo, PyObject *table, PyObject *raw, PyObject *value)
{
    PyObject *size = PyObject_GetAttr(memo, s_size);
    PyObject *most = size != NULL ? PyObject_GetAttr(memo, s_max_entries) : NULL;
    int full = most != NULL ? PyObject_RichCompareBool(size, most, Py_GE) : -1;
    int status = -1;
    if (full == 1) {
        PyObject *done = PyObject_CallMethodNoArgs(memo, s_room);
        status = done != NULL ? 0 : -1;
        Py_XDECREF(done);
    } else if (full == 0) {
        PyObject *one = PyLong_FromLong(1);
        PyObject *next = one != NULL ? PyNumber_Add(size, one) : NULL;
        status = next != NULL ? PyObject_SetAttr(memo, s_size, next) : -1;
        Py_XDECREF(one);
        Py_XDECREF(next);
    }
    Py_XDECREF(size);
    Py_XDECREF(most);
    return status == 0 ? PyDict_SetItem(table, raw, value) : -1;
}

/* --- MemoKeys ------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *query_name; /* matchkeys.QueryName, the type of a remembered name */
} MemoKeys;

static int
MemoKeys_init(MemoKeys *self, PyObject *args, PyObject *kwds)
{
    PyObject *type;
    if (!PyArg_ParseTuple(args, "O:MemoKeys", &type))
        return -1;
    if (kwds != NULL && PyDict_GET_SIZE(kwds) > 0) {
        PyErr_SetString(PyExc_TypeError, "MemoKeys takes no keyword arguments");
        return -1;
    }
    if (!PyType_Check(type) || !PyType_IsSubtype((PyTypeObject *)type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "MemoKeys needs a tuple type (matchkeys.QueryName)");
        return -1;
    }
    Py_INCREF(type);
    Py_XSETREF(self->query_name, type);
    return 0;
}

static void
MemoKeys_dealloc(MemoKeys *self)
{
    Py_XDECREF(self->query_name);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

enum { DATE, LAST, FIRST, FIELDS };

/* What the Python path must decide: None, nothing changed. */
#define UNSURE() do { PyErr_Clear(); result = Py_NewRef(Py_None); goto done; } while (0)

static PyObject *
MemoKeys_keys(MemoKeys *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "keys(fields, memo, today) takes 3 arguments");
        return NULL;
    }
    PyObject *fields = args[0], *memo = args[1], *today = args[2];
    PyObject *const names[FIELDS] = {s_birth_date, s_last_name, s_first_name};
    PyObject *const tables_of[FIELDS] = {s_birth_dates, s_last_names, s_first_names};
    PyObject *raw[FIELDS] = {NULL}, *tables[FIELDS] = {NULL}, *known[FIELDS] = {NULL};
    int made[FIELDS] = {0};
    PyObject *result = NULL;
    if (self->query_name == NULL) {
        PyErr_SetString(PyExc_TypeError, "MemoKeys was not initialised");
        return NULL;
    }
    if (!PyDict_CheckExact(fields)) /* another Mapping: its own get() decides */
        Py_RETURN_NONE;
    for (int f = 0; f < FIELDS; f++) {
        PyObject *value = PyDict_GetItemWithError(fields, names[f]);
        if (value == NULL && PyErr_Occurred())
            UNSURE();
        raw[f] = Py_NewRef(value != NULL ? value : Py_None);
        if (raw[f] != Py_None && !PyUnicode_CheckExact(raw[f]))
            UNSURE(); /* not a str: an error, which the Python path reports */
        tables[f] = PyObject_GetAttr(memo, tables_of[f]);
        if (tables[f] == NULL || !PyDict_CheckExact(tables[f]))
            UNSURE();
        value = PyDict_GetItemWithError(tables[f], raw[f]);
        if (value == NULL && PyErr_Occurred())
            UNSURE();
        known[f] = Py_XNewRef(value);
    }
    /* Values not seen yet, normalised here when plain ASCII (remembered below, once the
     * whole line is known to be answered here). */
    for (int f = 0; f < FIELDS; f++) {
        if (known[f] != NULL)
            continue;
        if (f == DATE) {
            char date[10];
            if (!date_normal(raw[f], today, date))
                UNSURE();
            known[f] = PyUnicode_FromStringAndSize(date, 10);
        } else
            known[f] = (f == LAST ? last_name_normal : first_name_normal)(self->query_name,
                                                                        raw[f]);
        if (known[f] == NULL) {
            if (PyErr_Occurred())
                goto done;
            UNSURE();
        }
        made[f] = 1;
    }
    Span date;
    Name last, first;
    if (!ascii_span(known[DATE], &date) || date.length == 0 || !read_name(known[LAST], &last)
        || !read_name(known[FIRST], &first))
        UNSURE(); /* no date ("required"), or a memo holding something else */
    int named = first.first.length > 0 && last.first.length > 0;
    if (!named && (first.first.length > 0 || last.first.length > 0))
        UNSURE(); /* half a name key: the Python path says which half is missing */
    PyObject *nir = PyDict_GetItemWithError(fields, s_nir);
    if (nir == NULL && PyErr_Occurred())
        UNSURE();
    char normal_nir[15];
    int no_nir = nir == NULL || nir == Py_None
                 || (PyUnicode_CheckExact(nir) && PyUnicode_GET_LENGTH(nir) == 0);
    if (no_nir && named)
        result = line_keys(NULL, date, &last, &first);
    else if (!no_nir && nir_normal(nir, normal_nir))
        result = line_keys(normal_nir, date, named ? &last : NULL, named ? &first : NULL);
    else
        UNSURE();
    if (result == NULL)
        goto done;
    /* In QueryMemo's order: the date, then the last name, then the first names. */
    for (int f = 0; f < FIELDS; f++)
        if (made[f] && remember(memo, tables[f], raw[f], known[f]) != 0) {
            Py_CLEAR(result);
            goto done;
        }
done:
    for (int f = 0; f < FIELDS; f++) {
        Py_XDECREF(raw[f]);
        Py_XDECREF(tables[f]);
        Py_XDECREF(known[f]);
    }
    return result;
}

static PyMethodDef MemoKeys_methods[] = {
    {"keys", (PyCFunction)(void (*)(void))MemoKeys_keys, METH_FASTCALL,
     "keys(fields, memo, today, /) -> the canonical keys of a line (matchkeys.canonical_keys "
     "with that memo), or None when the Python path must decide."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject MemoKeysType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "indexer.core._querykeys.MemoKeys",
    .tp_doc = PyDoc_STR("MemoKeys(QueryName): the fast path of canonical_keys with a memo."),
    .tp_basicsize = sizeof(MemoKeys),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)MemoKeys_init,
    .tp_dealloc = (destructor)MemoKeys_dealloc,
    .tp_methods = MemoKeys_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "indexer.core._querykeys",
    .m_doc = "The canonical keys of a bulk line from the request's memo.",
    .m_size = -1,
};

static int
intern_names(void)
{
    struct {
        PyObject **name;
        const char *text;
    } names[] = {
        {&s_nir, "nir"}, {&s_birth_date, "birth_date"}, {&s_last_name, "last_name"},
        {&s_first_name, "first_name"}, {&s_birth_dates, "birth_dates"},
        {&s_last_names, "last_names"}, {&s_first_names, "first_names"}, {&s_size, "_size"},
        {&s_max_entries, "max_entries"}, {&s_room, "_room"},
    };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (*names[i].name == NULL
            && (*names[i].name = PyUnicode_InternFromString(names[i].text)) == NULL)
            return -1;
    return 0;
}

PyMODINIT_FUNC
PyInit__querykeys(void)
{
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL || intern_names() < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddType(m, &MemoKeysType) < 0) { /* readies it, adds a reference */
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
