/*
 * dash_prom.c: see dash_prom.h. One line at a time is copied into a bounded scratch
 * buffer where names and unescaped label values are NUL-terminated in place.
 */
#include "dash_prom.h"

#include <math.h>
#include <stdlib.h>

static bool name_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}

static bool name_char(char c)
{
    return name_start(c) || (c >= '0' && c <= '9');
}

static void skip_blanks(const char **p, const char *end)
{
    while (*p < end && (**p == ' ' || **p == '\t'))
        (*p)++;
}

/* Copies a metric or label name from *p into *out (advancing both). */
static bool read_name(const char **p, const char *end, char **out, bool label)
{
    const char *s = *p;
    if (s >= end || !name_start(*s) || (label && *s == ':'))
        return false;
    while (s < end && name_char(*s) && !(label && *s == ':'))
        *(*out)++ = *s++;
    *(*out)++ = '\0';
    *p = s;
    return true;
}

/* Reads a double token (also +Inf, -Inf, NaN) ending at a blank or the line end. */
static bool read_number(const char **p, const char *end, double *v, bool integer_only)
{
    const char *s = *p;
    char tok[64];
    size_t n = 0;
    while (s < end && *s != ' ' && *s != '\t') {
        if (n + 1 >= sizeof(tok))
            return false;
        tok[n++] = *s++;
    }
    if (n == 0)
        return false;
    tok[n] = '\0';
    char *e = NULL;
    if (integer_only) {
        (void)strtoll(tok, &e, 10);
        *v = 0;
    } else if (strcmp(tok, "+Inf") == 0 || strcmp(tok, "Inf") == 0) {
        *v = INFINITY;
        e = tok + n;
    } else if (strcmp(tok, "-Inf") == 0) {
        *v = -INFINITY;
        e = tok + n;
    } else if (strcmp(tok, "NaN") == 0) {
        *v = NAN;
        e = tok + n;
    } else {
        *v = strtod(tok, &e);
    }
    if (e != tok + n)
        return false;
    *p = s;
    return true;
}

/* Parses one line (no newline) into @p s using @p scratch (at least 2 * line length + 2). */
static bool parse_line(const char *p, const char *end, dash_prom_sample_t *s, char *scratch)
{
    char *out = scratch;
    s->nlabels = 0;
    s->name = out;
    if (!read_name(&p, end, &out, false))
        return false;
    if (p < end && *p == '{') {
        p++;
        for (;;) {
            skip_blanks(&p, end);
            if (p < end && *p == '}') {
                p++;
                break;
            }
            if (s->nlabels == DASH_PROM_LABELS_MAX)
                return false;
            dash_prom_label_t *l = &s->labels[s->nlabels++];
            l->name = out;
            if (!read_name(&p, end, &out, true))
                return false;
            skip_blanks(&p, end);
            if (p >= end || *p != '=')
                return false;
            p++;
            skip_blanks(&p, end);
            if (p >= end || *p != '"')
                return false;
            p++;
            l->value = out;
            for (;;) {
                if (p >= end)
                    return false;
                char c = *p++;
                if (c == '"')
                    break;
                if (c == '\\') {
                    if (p >= end)
                        return false;
                    c = *p++;
                    if (c == 'n')
                        c = '\n';
                    else if (c != '\\' && c != '"')
                        return false;
                }
                *out++ = c;
            }
            *out++ = '\0';
            skip_blanks(&p, end);
            if (p < end && *p == ',') {
                p++;
                continue;
            }
            if (p < end && *p == '}') {
                p++;
                break;
            }
            return false;
        }
    }
    if (p >= end || (*p != ' ' && *p != '\t'))
        return false;
    skip_blanks(&p, end);
    if (!read_number(&p, end, &s->value, false))
        return false;
    skip_blanks(&p, end);
    if (p < end) {
        double ts;
        if (!read_number(&p, end, &ts, true))
            return false;
        skip_blanks(&p, end);
    }
    return p == end;
}

size_t dash_prom_parse(const char *text, size_t len, dash_prom_cb cb, void *opaque, size_t *bad)
{
    /* Names and values never exceed the line, plus one NUL each: 2x the line is enough. */
    static _Thread_local char scratch[2 * DASH_PROM_LINE_MAX + 64];
    dash_prom_sample_t s;
    size_t nsamples = 0, nbad = 0;
    const char *p = text, *end = text + len;

    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol != NULL ? eol : end;
        const char *ls = p;
        p = eol != NULL ? eol + 1 : end;
        if (le > ls && le[-1] == '\r')
            le--;
        skip_blanks(&ls, le);
        if (ls == le || *ls == '#')
            continue;
        if (le - ls > DASH_PROM_LINE_MAX || !parse_line(ls, le, &s, scratch)) {
            nbad++;
            continue;
        }
        nsamples++;
        if (cb != NULL)
            cb(&s, opaque);
    }
    if (bad != NULL)
        *bad = nbad;
    return nsamples;
}

const char *dash_prom_label(const dash_prom_sample_t *s, const char *name)
{
    for (size_t i = 0; i < s->nlabels; i++)
        if (strcmp(s->labels[i].name, name) == 0)
            return s->labels[i].value;
    return NULL;
}
