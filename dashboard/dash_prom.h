/*
 * dash_prom.h: a parser for the Prometheus text exposition format (0.0.4), enough to read
 * the collector's and enrichers' /metrics: `name{label="value",...} value [timestamp]`,
 * comments and HELP/TYPE lines skipped. Malformed lines are counted and skipped, never
 * fatal; nothing is read outside [text, text + len).
 */
#ifndef DASH_PROM_H
#define DASH_PROM_H

#include "at_common.h"

#define DASH_PROM_LINE_MAX 4096 /* longer lines are malformed */
#define DASH_PROM_LABELS_MAX 16 /* lines with more labels are malformed */

typedef struct dash_prom_label_s {
    const char *name;
    const char *value; /* unescaped */
} dash_prom_label_t;

/* One sample. Every string points into the parser's scratch space and is valid only
 * during the callback. */
typedef struct dash_prom_sample_s {
    const char *name;
    dash_prom_label_t labels[DASH_PROM_LABELS_MAX];
    size_t nlabels;
    double value;
} dash_prom_sample_t;

typedef void (*dash_prom_cb)(const dash_prom_sample_t *s, void *opaque);

/*
 * Calls @p cb for every well-formed sample line of @p text (@p len bytes, need not be
 * NUL-terminated). Returns the number of samples; *@p bad (may be NULL) gets the number of
 * malformed lines. @locality: any thread (no shared state).
 */
size_t dash_prom_parse(const char *text, size_t len, dash_prom_cb cb, void *opaque, size_t *bad);

/* The value of label @p name of @p s, or NULL. */
const char *dash_prom_label(const dash_prom_sample_t *s, const char *name);

#endif
