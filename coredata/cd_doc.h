/*
 * cd_doc.h: the core-data documents of docs/CORE-DATA.md, their validation, and the
 * update operations that change them (from the admin API or the updates topic).
 *
 * Validation collects EVERY problem of a document, each as (field, what was expected), so
 * a client fixes all of them in one round trip. Valid input becomes a canonical document:
 * known fields only, in a fixed order, optional fields filled with their defaults, integers
 * as int64. The version is appended by cd_core, never taken from the client (a client's
 * "version" is the optimistic-concurrency check, see cd_update_t.expect_version).
 *
 * Everything here is pure (no I/O, no globals): @locality any thread.
 */
#ifndef CD_DOC_H
#define CD_DOC_H

#include <bson/bson.h>

#include "at_err.h"
#include "cd_store.h"

#define CD_ID_MAX 64
#define CD_NAME_MAX 256
#define CD_DOMAIN_MAX 253
#define CD_URL_MAX 2048
#define CD_PUBLISHERS_MAX 1000
#define CD_DESTINATIONS_MAX 100
#define CD_BUDGET_MAX INT64_C(1000000000000000)  /* 10^15 micros = 10^9 currency units */
#define CD_PRICE_MAX INT64_C(1000000000000)      /* 10^12 micros */
#define CD_VERSION_MAX INT64_C(9007199254740991) /* 2^53 - 1: exact in every JSON reader */
#define CD_RAW_MAX 2048                          /* "raw" in a rejected update */

/* One validation problem: the field ("price_micros", "publishers[2]", "(body)") and what
 * was expected there, e.g. "an integer from 0 to 10^12". */
typedef struct cd_verr_s {
    char field[96];
    char expected[192];
} cd_verr_t;

#define CD_VERRS_MAX 32

typedef struct cd_verrs_s {
    cd_verr_t items[CD_VERRS_MAX];
    size_t count;   /* stored items */
    size_t dropped; /* problems beyond CD_VERRS_MAX (counted, not stored) */
} cd_verrs_t;

/* Adds one problem; @p field is sanitised (printable ASCII, at most 64 bytes). */
void cd_verrs_add(cd_verrs_t *e, const char *field, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Appends "errors": [{"field", "expected"}, ...] to @p out. */
void cd_verrs_append(const cd_verrs_t *e, bson_t *out);

/* "field: expected X; field2: expected Y" into @p buf (truncated). Returns buf. */
const char *cd_verrs_summary(const cd_verrs_t *e, char *buf, size_t size);

/* True for a valid entity id: 1..64 characters of [A-Za-z0-9._:-]. */
bool cd_id_valid(const char *s, size_t len);

/* Parses an RFC 3339 UTC time "YYYY-MM-DDTHH:MM:SS[.fraction]Z" (years 1970..9999) into
 * Unix milliseconds. 0, or -1 when malformed or not a real calendar date. */
int cd_time_parse(const char *s, size_t len, int64_t *ms);

/* Kind names as in the contract: "campaign", "publisher". */
const char *cd_kind_str(cd_kind_t kind);
/* Plural collection names: "campaigns", "publishers". */
const char *cd_kind_plural(cd_kind_t kind);
/* Parses "campaign"/"publisher"; -1 if neither. */
int cd_kind_parse(const char *s, size_t len, cd_kind_t *kind);

/*
 * Validates a campaign or publisher as sent by a client, and on success writes the
 * canonical document (without "version") into @p out (an uninitialised bson_t the caller
 * then owns and destroys; untouched on failure).
 * @p path_id: the id from the URL (NULL for the updates topic, where the body's "id" is
 * required); when both are given they must agree.
 * @p expect_version: set to the body's "version" (the version the client last read), or -1
 * when absent.
 * Returns 0, or -1 with every problem in @p errs.
 */
int cd_doc_validate(cd_kind_t kind, const bson_t *in, const char *path_id, bson_t *out, int64_t *expect_version,
                    cd_verrs_t *errs);

/* Parses a JSON body into @p out (uninitialised; the caller destroys it on success).
 * Only a JSON object is accepted. -1 with one "(body)" problem in @p errs otherwise. */
int cd_json_object(const char *json, size_t len, bson_t *out, cd_verrs_t *errs);

/* What an update does. */
typedef enum cd_op_e {
    CD_OP_PUT = 0,      /* create or replace (doc) */
    CD_OP_DELETE,       /* leave a tombstone */
    CD_OP_BUDGET_SET,   /* campaign: budget_micros = amount */
    CD_OP_BUDGET_TOPUP, /* campaign: budget_micros += amount */
    CD_OP_PAUSE,        /* campaign: status = paused */
    CD_OP_RESUME,       /* campaign: status = active */
} cd_op_t;

const char *cd_op_str(cd_op_t op);

/* One validated update. */
typedef struct cd_update_s {
    cd_kind_t kind;
    cd_op_t op;
    char id[CD_ID_MAX + 1];
    bson_t doc;             /* CD_OP_PUT: the canonical document without version; else empty */
    int64_t amount;         /* budget ops */
    int64_t expect_version; /* -1: unconditional; 0: only if it does not exist; N: only if at N */
} cd_update_t;

/* Initialises @p u as an empty update (op PUT, no doc, unconditional). */
void cd_update_init(cd_update_t *u);
/* Frees what @p u owns (its doc). Accepts NULL. */
void cd_update_free(cd_update_t *u);

/*
 * Parses one message of the updates topic:
 *   {"kind":"campaign"|"publisher","op":"put","doc":{...}[,"version":N]}
 *   {"kind":...,"op":"delete","id":"..."[,"version":N]}
 *   {"kind":"campaign","op":"budget","id":"...","set_micros":N | "topup_micros":N[,"version":N]}
 *   {"kind":"campaign","op":"pause"|"resume","id":"..."[,"version":N]}
 * Fields of "doc" are checked by cd_doc_validate() (errors named "doc.<field>").
 * On success fills @p u (initialised by this function; free with cd_update_free()) and
 * returns 0. Returns -1 with the problems in @p errs (u is then empty, nothing to free),
 * and sets *@p malformed when the input was not a JSON object at all.
 */
int cd_update_parse(const char *json, size_t len, cd_update_t *u, cd_verrs_t *errs, bool *malformed);

/*
 * Admin API bodies other than a document. @p in may be NULL (empty body).
 * Budget: {"set_micros":N} or {"topup_micros":N}, plus optional "version".
 * Pause/resume: {} or {"version":N}. Fills op/amount/expect_version of @p u.
 */
int cd_budget_body(const bson_t *in, cd_update_t *u, cd_verrs_t *errs);
int cd_version_body(const bson_t *in, cd_update_t *u, cd_verrs_t *errs);

/* Copies @p doc into @p out (uninitialised) with field @p key replaced by / set to the
 * given value (appended when absent). */
void cd_doc_set_int64(const bson_t *doc, const char *key, int64_t v, bson_t *out);
void cd_doc_set_utf8(const bson_t *doc, const char *key, const char *v, bson_t *out);

/* Reads an int64 (or int32) field; @p def when absent or of another type. */
int64_t cd_doc_int64(const bson_t *doc, const char *key, int64_t def);
/* Reads a string field into @p buf (truncated); "" when absent. Returns buf. */
const char *cd_doc_utf8(const bson_t *doc, const char *key, char *buf, size_t size);
/* True when the document is a tombstone ("deleted": true). */
bool cd_doc_deleted(const bson_t *doc);

/* Copies at most @p max bytes of @p s into a new bson_malloc'ed NUL-terminated string,
 * replacing bytes that are not valid UTF-8 (and NUL) by U+FFFD, so it is always valid JSON
 * text once escaped. */
char *cd_utf8_sanitize(const char *s, size_t len, size_t max);

#endif
